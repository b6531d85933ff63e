"""Atomic writes, manifests and checked model files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recctl.artifacts import (
    Manifest,
    atomic_path,
    config_hash,
    file_record,
    load_pickle_checked,
    read_manifest,
    save_pickle,
    sha256_file,
    verify_output,
    write_json_atomic,
    write_parquet_atomic,
)
from recctl.errors import ArtifactError


def test_atomic_write_keeps_old_content_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("yesterday")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "yesterday"
    assert list(tmp_path.iterdir()) == [target], "temporary file must be cleaned up"


def test_atomic_write_survives_keyboard_interrupt(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("{")
        raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"v": 1}


def test_parquet_round_trip_is_exact(tmp_path: Path) -> None:
    frame = pl.DataFrame({"user_id": ["a", "b"], "score": [0.5, 0.25]})
    path = write_parquet_atomic(frame, tmp_path / "f.parquet")
    assert pl.read_parquet(path).equals(frame)


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.integers() | st.text(max_size=5), max_size=5))
def test_config_hash_ignores_key_order(section: dict) -> None:
    reordered = dict(reversed(list(section.items())))
    assert config_hash(section) == config_hash(reordered)


def test_manifest_round_trip_and_output_check(tmp_path: Path) -> None:
    out = tmp_path / "data.parquet"
    write_parquet_atomic(pl.DataFrame({"x": [1, 2, 3]}), out)
    manifest = Manifest(
        stage="demo",
        config_section={"a": 1},
        config_hash=config_hash({"a": 1}),
        seed=7,
        outputs=[file_record(out, 3, relative_to=tmp_path)],
    )
    manifest.write(tmp_path)
    again = read_manifest(tmp_path, stage="demo")
    assert again.to_dict() == manifest.to_dict()
    assert verify_output(tmp_path, again, "data.parquet") == out
    out.write_bytes(out.read_bytes() + b"tampered")
    with pytest.raises(ArtifactError, match="does not match the 'demo' manifest"):
        verify_output(tmp_path, again, "data.parquet")


def test_missing_manifest_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(
        ArtifactError, match=r"no finished 'preprocess' stage here; run `recctl preprocess CONFIG` first"
    ):
        read_manifest(tmp_path / "preprocess")


def test_pickle_hash_checked_before_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    record = save_pickle({"weights": [1, 2]}, path)
    assert record.sha256 == sha256_file(path)
    assert load_pickle_checked(path, record.sha256) == {"weights": [1, 2]}
    # a different (even valid) pickle is refused because its hash differs
    path.write_bytes(pickle.dumps({"weights": [6, 6, 6]}))
    with pytest.raises(ArtifactError, match="refusing to load a file that changed"):
        load_pickle_checked(path, record.sha256)


def test_pickle_wrong_class_refused(tmp_path: Path) -> None:
    record = save_pickle([1, 2], tmp_path / "m.pkl")
    with pytest.raises(ArtifactError, match="holds a list, expected a dict"):
        load_pickle_checked(tmp_path / "m.pkl", record.sha256, expected_type=dict)


class _Payload:
    """What a crafted pickle does: call a function of the attacker's choice while loading."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        import os

        return (os.system, (f"touch {self.marker}",))


def _crafted(path: Path, marker: Path, *, stamped: bool = True) -> str:
    from recctl.artifacts import model_stamp

    with path.open("wb") as handle:
        if stamped:
            pickle.dump(model_stamp(), handle)
        pickle.dump(_Payload(marker), handle)
    return sha256_file(path)


@pytest.mark.parametrize("stamped", [True, False])
def test_a_crafted_pickle_is_refused_before_anything_runs(tmp_path: Path, stamped: bool) -> None:
    marker = tmp_path / "pwned"
    sha = _crafted(tmp_path / "m.pkl", marker, stamped=stamped)
    with pytest.raises(ArtifactError) as info:
        load_pickle_checked(tmp_path / "m.pkl", sha)  # the "manifest" agrees with the file
    assert not marker.exists()
    assert ("posix.system" in str(info.value) or "os.system" in str(info.value)) or "not a recctl model" in str(
        info.value
    )


def test_truncated_model_file_is_an_artifact_error(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    save_pickle({"weights": list(range(1000))}, path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ArtifactError, match="corrupt model file"):
        load_pickle_checked(path, sha256_file(path))


def test_version_rule_refuses_another_major_and_warns_on_a_patch(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    from recctl.artifacts import model_stamp

    def write(versions: dict[str, str]) -> str:
        stamp = model_stamp()
        stamp["versions"].update(versions)
        with (tmp_path / "m.pkl").open("wb") as handle:
            pickle.dump(stamp, handle)
            pickle.dump({"w": 1}, handle)
        return sha256_file(tmp_path / "m.pkl")

    numpy_now = model_stamp()["versions"]["numpy"]
    sha = write({"numpy": f"{int(numpy_now.split('.')[0]) + 1}.0.0"})
    with pytest.raises(ArtifactError, match="different major version"):
        load_pickle_checked(tmp_path / "m.pkl", sha)
    major, minor = numpy_now.split(".")[:2]
    sha = write({"numpy": f"{major}.{minor}.999"})
    assert load_pickle_checked(tmp_path / "m.pkl", sha) == {"w": 1}
    assert "other library versions" in caplog.text
