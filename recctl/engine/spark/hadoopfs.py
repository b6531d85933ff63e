"""Files behind URIs (``s3a://``, ``gs://``, ``abfs://``, ``hdfs://``, ``file://``) through Hadoop's FileSystem API.

The driver reaches them through the running Spark session's JVM (py4j), so the user's own
Spark/Hadoop configuration (credentials, endpoints, connectors) applies and recctl adds
nothing of its own. Used to publish the nightly file on object stores
(:mod:`recctl.engine.spark.publish`) and to fingerprint remote raw inputs for the stage
graph's freshness check (:func:`fingerprint`), without reading their bytes on the driver.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

__all__ = ["ATOMIC_PUT_SCHEMES", "FileInfo", "HadoopFS", "fingerprint", "hadoop_uri"]

#: object stores whose writes become visible whole when the stream closes (one PUT): a pointer is
#: replaced by writing it in place; other file systems replace it by a rename over the old one
ATOMIC_PUT_SCHEMES = frozenset({"s3a", "s3", "s3n", "gs"})


@dataclass(frozen=True)
class FileInfo:
    """What the file system says about one file: size, modification time, checksum when it has one."""

    uri: str
    length: int
    modified_ms: int
    checksum: str | None

    def fingerprint(self) -> str:
        """A stable text standing for the file's content: ``<algorithm>:<hex>`` or ``len=..;mtime=..``."""
        if self.checksum:
            return f"{self.checksum};len={self.length}"
        return f"len={self.length};mtime={self.modified_ms}"


class HadoopFS:
    """The few file operations recctl needs, on any URI Spark's Hadoop configuration can open."""

    def __init__(self, spark: Any) -> None:
        self._jvm = spark._jvm
        self._conf = spark._jsc.hadoopConfiguration()
        self._gateway = spark.sparkContext._gateway

    def _path(self, uri: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(uri)

    def _fs(self, uri: str) -> tuple[Any, Any]:
        path = self._path(uri)
        return path.getFileSystem(self._conf), path

    def exists(self, uri: str) -> bool:
        """Whether a file or directory exists at ``uri``."""
        fs, path = self._fs(uri)
        return bool(fs.exists(path))

    def info(self, uri: str) -> FileInfo:
        """Length, modification time and (when the file system offers one) checksum of a file."""
        fs, path = self._fs(uri)
        status = fs.getFileStatus(path)
        checksum = None
        try:
            found = fs.getFileChecksum(path)
        except Exception:  # noqa: BLE001 - some connectors raise instead of returning null
            found = None
        if found is not None:
            checksum = f"{found.getAlgorithmName()}:{bytes(found.getBytes()).hex()}"
        return FileInfo(uri, int(status.getLen()), int(status.getModificationTime()), checksum)

    def glob(self, pattern: str) -> list[FileInfo]:
        """Files matching a glob (directories are listed one level), sorted by URI."""
        fs, path = self._fs(pattern)
        found = fs.globStatus(path) or []
        out: list[FileInfo] = []
        for status in found:
            children = fs.listStatus(status.getPath()) if status.isDirectory() else [status]
            for child in children:
                if child.isFile():
                    out.append(self.info(hadoop_uri(child.getPath())))
        return sorted(out, key=lambda f: f.uri)

    def children(self, uri: str) -> list[tuple[str, bool, int]]:
        """``(name, is_directory, modified_ms)`` of the entries directly under ``uri`` (none if absent)."""
        fs, path = self._fs(uri)
        if not fs.exists(path):
            return []
        return sorted(
            (str(s.getPath().getName()), bool(s.isDirectory()), int(s.getModificationTime()))
            for s in fs.listStatus(path)
        )

    def upload(self, local: Path, uri: str) -> None:
        """Copy a local file to ``uri`` (replacing what is there)."""
        fs, path = self._fs(uri)
        fs.copyFromLocalFile(False, True, self._path(local.resolve().as_uri()), path)

    def download(self, uri: str, local: Path) -> None:
        """Copy ``uri`` to a local file (no ``.crc`` side file)."""
        fs, path = self._fs(uri)
        fs.copyToLocalFile(False, path, self._path(local.resolve().as_uri()), True)

    def read_text(self, uri: str) -> str | None:
        """A small text file's content, or ``None`` when it does not exist."""
        fs, path = self._fs(uri)
        if not fs.exists(path):
            return None
        stream = fs.open(path)
        try:
            data = self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
        finally:
            stream.close()
        return bytes(data).decode("utf-8")

    def write_text(self, uri: str, text: str) -> None:
        """Write a small text file (replacing it; on object stores the object appears whole at close)."""
        fs, path = self._fs(uri)
        stream = fs.create(path, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()

    def rename(self, src: str, dst: str) -> bool:
        """Rename (a directory with its content too); ``False`` when the file system refused."""
        fs, path = self._fs(src)
        parent = self._path(dst).getParent()
        if parent is not None:
            fs.mkdirs(parent)
        return bool(fs.rename(path, self._path(dst)))

    def replace_text(self, uri: str, text: str, tmp_uri: str) -> None:
        """Replace a small file so that readers see the old or the new content, never a part or none.

        Object stores (:data:`ATOMIC_PUT_SCHEMES`): one PUT, visible whole at close. A local
        ``file://`` path: the operating system's atomic rename over the old file. Other file
        systems (HDFS, ABFS): ``tmp_uri`` written, then renamed over the old file with
        ``FileContext.rename(OVERWRITE)`` (atomic on HDFS).
        """
        scheme = urlparse(uri).scheme.lower()
        if scheme in ATOMIC_PUT_SCHEMES:
            self.write_text(uri, text)
            return
        if scheme == "file":
            target = Path(urlparse(uri).path)
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
            return
        self.write_text(tmp_uri, text)
        fs_pkg = self._jvm.org.apache.hadoop.fs
        context = fs_pkg.FileContext.getFileContext(self._path(uri).toUri(), self._conf)
        options = self._gateway.new_array(fs_pkg.Options.Rename, 1)
        options[0] = fs_pkg.Options.Rename.OVERWRITE
        context.rename(self._path(tmp_uri), self._path(uri), options)

    def delete(self, uri: str) -> None:
        """Delete a file or a directory tree (nothing when absent)."""
        fs, path = self._fs(uri)
        if fs.exists(path):
            fs.delete(path, True)


def hadoop_uri(path: Any) -> str:
    """A Hadoop Path as a URI with ``//`` (Hadoop prints local files as ``file:/tmp/x``)."""
    text = str(path.toUri().toString())
    scheme, colon, rest = text.partition(":")
    if colon and rest.startswith("/") and not rest.startswith("//"):
        return f"{scheme}://{rest}"
    return text


def fingerprint(spark: Any, pattern: str) -> list[tuple[str, str]]:
    """``(uri, fingerprint)`` of every file a raw-input URI (glob allowed) names, from file status only.

    The bytes are not read: the file system's checksum when it offers one (HDFS: MD5 of CRC32C
    blocks; S3A with ``fs.s3a.etag.checksum.enabled``: the ETag), with the length; else the
    length and modification time. A new, removed, grown or rewritten file changes it.
    """
    return [(f.uri, f.fingerprint()) for f in HadoopFS(spark).glob(pattern)]
