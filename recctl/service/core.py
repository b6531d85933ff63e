"""The service without HTTP: bundle, events, lists, readiness (``recctl.service.app`` wraps it).

Everything a request does happens on the event loop's thread and takes microseconds (lists
come from the bundle's arrays in memory); only disk work (the event log's write + fsync,
exposure flushes, loading a new bundle) runs in worker threads.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import gc
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recctl.config import Config
from recctl.errors import ArtifactError, BusyError, MachineError
from recctl.service.bundles import BundleHolder, LoadedBundle
from recctl.service.eventlog import EventLog, EventLogBusy, EventLogFull, Segment
from recctl.service.exposures import ExposureLog
from recctl.service.layout import EventLayout
from recctl.service.metrics import Metrics
from recctl.service.recent import LiveEvent, RecentEvents, event_key

__all__ = ["EventIn", "Service", "ServiceError", "bundle_dir", "events_dir"]

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """A request the service refuses: ``status`` is the HTTP status, ``loc`` where it failed."""

    def __init__(self, status: int, message: str, loc: list[str | int] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.loc = loc


@dataclass
class EventIn:
    """One event as posted (validated by the HTTP layer)."""

    user_id: str
    item_id: str
    event: str | None = None
    timestamp: dt.datetime | None = None
    value: float | None = None


@dataclass
class _Counters:
    started_at: float = field(default_factory=time.time)
    replayed: int = 0


def bundle_dir(cfg: Config) -> Path:
    """The published serving bundle the service reads (``<workdir>/export/bundle``)."""
    return cfg.stage_dir("export") / "bundle"


def events_dir(cfg: Config) -> Path:
    """The service's event log directory (``<workdir>/events``)."""
    return cfg.workdir_path / "events"


class Service:
    """A running recommendation service over one config's published bundle.

    Parameters
    ----------
    cfg
        The experiment config (``serve:`` section, data layout, rules, experiment).
    clock
        Returns the current UTC time (tests inject a fixed one).
    """

    def __init__(self, cfg: Config, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.cfg = cfg
        self.sc = cfg.serve
        from recctl import clock as _clock

        self.clock = clock or _clock.now
        sources = cfg.data.interaction_sources()
        key = "data.interactions" if not isinstance(cfg.data.interactions, list) else "data.interactions.0"
        self.layout = EventLayout(sources[0], key)
        self.holder = BundleHolder(bundle_dir(cfg))
        ev = self.sc.events
        self.events = EventLog(
            events_dir(cfg),
            self.layout,
            rotate_bytes=int(ev.rotate_mb * (1 << 20)),
            rotate_s=ev.rotate_s,
            max_pending=ev.max_pending,
        )
        self.recent = RecentEvents(ev.max_users, ev.max_recent)
        self._inflight: set[tuple[str, bytes]] = set()
        self.metrics = Metrics()
        self.token = self.sc.token or os.environ.get(self.sc.token_env) or None
        self.experiment = cfg.experiment
        self.exposures: ExposureLog | None = None
        if self.experiment is not None and self.sc.exposures:
            self.exposures = ExposureLog(events_dir(cfg) / "exposures" / f"{self.experiment.name}.csv")
        self._counters = _Counters()
        self._tasks: list[asyncio.Task[None]] = []
        # garbage-collector pauses, recorded by a gc callback in whichever thread collects,
        # folded into the metrics when they are rendered (the metrics belong to the loop thread)
        self.gc_pauses: collections.deque[tuple[int, float]] = collections.deque(maxlen=10_000)
        self._gc_started = 0.0
        self._describe_metrics()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the bundle, open the event log, replay events the bundle has not learnt from.

        Raises
        ------
        ArtifactError
            No published bundle, or a broken one (run ``recctl serve-export CONFIG``).
        BusyError
            Another ``recctl serve`` writes this workdir's event log (exit 8).
        MachineError
            The event log directory cannot be created or written (exit 9).
        """
        self.holder.load_first()
        try:
            segments = self.events.open()
        except EventLogBusy as exc:
            raise BusyError(str(exc)) from None
        except OSError as exc:
            path = exc.filename or self.events.directory
            raise MachineError(
                f"{path}: the event log cannot be opened ({exc.strerror or exc}); check the disk and permissions"
            ) from None
        self._replay(segments)
        gc.callbacks.append(self._on_gc)
        if self.token is None:
            log.warning(
                "no write token configured (serve.token or $%s): POST /v1/events and /v1/admin/* answer 403",
                self.sc.token_env,
            )

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.append((int(info.get("generation", -1)), time.perf_counter() - self._gc_started))

    @staticmethod
    def settle_memory() -> None:
        """Collect once, then move every object alive now out of the collector's sight.

        The loaded bundle, the application and the libraries are hundreds of thousands of
        objects that live as long as the process; without this every full collection walks
        them all (tens of milliseconds on the loop's thread: a p99 spike every few thousand
        requests). Frozen objects are still freed by reference counting; only reference
        cycles among them would stay (a bundle has none).
        """
        gc.collect()
        gc.freeze()

    async def _watch_loop_lag(self, period: float = 0.05) -> None:
        # how late the loop wakes a sleeping task: blocking work on the loop's thread plus
        # the operating system's scheduling delay; what every request waiting then also waits
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + period
            await asyncio.sleep(period)
            self.metrics.observe("recctl_serve_loop_lag_seconds", max(0.0, loop.time() - due))

    async def run_background(self) -> None:
        """Start the periodic tasks: bundle watcher, segment rotation, exposure flushes, loop-lag probe."""
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._watch_loop_lag()))
        if self.sc.reload_interval_s > 0:
            self._tasks.append(loop.create_task(self._watch()))
        self._tasks.append(loop.create_task(self._rotate_when_due()))
        if self.exposures is not None:
            self._tasks.append(loop.create_task(self._flush_exposures()))

    async def stop(self) -> None:
        """Stop the periodic tasks, write what is buffered, close the open segment."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
        await self.events.close()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self.exposures is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.exposures.close)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.sc.reload_interval_s)
            try:
                await self.reload()
            except Exception:  # never let the watcher die
                log.exception("bundle watcher")

    async def _rotate_when_due(self) -> None:
        period = max(0.5, min(60.0, self.events.rotate_s / 10))
        while True:
            await asyncio.sleep(period)
            try:
                await self.events.rotate(only_if_due=True)
            except OSError:
                log.exception("event log rotation")

    async def _flush_exposures(self) -> None:
        assert self.exposures is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            try:
                await loop.run_in_executor(None, self.exposures.flush)
            except OSError:
                log.exception("exposure log")

    # -- bundle and events since it ------------------------------------------------------------
    def _consumed_segments(self, loaded: LoadedBundle, segments: list[Segment]) -> set[int]:
        """Closed segments the bundle has learnt from: ingested (``--append``) before it was generated."""
        manifest = self.cfg.stage_dir("ingest") / "manifest.json"
        try:
            batches = json.loads(manifest.read_text(encoding="utf-8")).get("summary", {}).get("batches", [])
        except (OSError, ValueError):
            return set()
        generated = str(loaded.bundle.meta.get("generated_at") or "")
        ingested = {}
        for b in batches:
            try:
                ingested[str(Path(b["path"]).resolve())] = str(b.get("ingested_at") or "")
            except (KeyError, TypeError, OSError):
                continue
        out = set()
        for seg in segments:
            when = ingested.get(str(seg.path.resolve())) if seg.closed else None
            # ISO-8601 UTC texts compare in time order
            if when is not None and generated and when[:19] <= generated[:19]:
                out.add(seg.seq)
        return out

    def _replay(self, segments: list[Segment]) -> None:
        loaded = self.holder.current
        assert loaded is not None
        consumed = self._consumed_segments(loaded, segments)
        n = 0
        for seg in segments:
            if seg.seq in consumed:
                continue
            for raw in self.layout.parse(seg.path.read_bytes()):
                key = event_key(raw.fields)
                if not self.recent.has(raw.user_id, key):
                    self.recent.add(raw.user_id, LiveEvent(raw.item_id, raw.event, seg.seq, key))
                    n += 1
        self._counters.replayed = n
        if n:
            log.info("replayed %d events the bundle has not learnt from (segments since the last ingest)", n)

    async def reload(self, *, force: bool = False) -> dict[str, Any]:
        """Switch to a newly published bundle when there is one (see :mod:`recctl.service.bundles`)."""
        switched, message = await self.holder.reload(force=force)
        self.metrics.inc("recctl_serve_reloads_total", outcome="switched" if switched else "kept")
        dropped = 0
        if switched:
            from recctl.service.eventlog import list_segments

            loaded = self.holder.current
            assert loaded is not None
            consumed = self._consumed_segments(loaded, list_segments(self.events.directory))
            dropped = self.recent.forget_segments(consumed)
            gc.freeze()  # the new bundle's objects join the long-lived ones (see settle_memory)
        return {"switched": switched, "message": message, "version": self.holder.version, "events_forgotten": dropped}

    def _bundle(self) -> LoadedBundle:
        loaded = self.holder.current
        if loaded is None:  # pragma: no cover - start() loads one or the service does not start
            raise ServiceError(503, "no serving bundle loaded yet")
        return loaded

    # -- lists -----------------------------------------------------------------------------------
    def _variant(self, user_id: str) -> str | None:
        if self.experiment is None:
            return None
        from recctl.abtest.assign import assign_variants

        return str(assign_variants([user_id], self.experiment)[0])

    def _list(self, loaded: LoadedBundle, user_id: str, k: int, exclude: list[str]) -> dict[str, Any]:
        bundle = loaded.bundle
        variant = self._variant(user_id)
        events = self.recent.get(user_id)
        if variant == "holdout":
            items: list[dict[str, Any]] = []
        else:
            # the bundle's one list path: the nightly list, or (with events since the bundle) the
            # user's variant model re-scored from history + new items, through the fill step
            model = self.experiment.variants[variant].model if variant is not None and self.experiment else None
            items = bundle.recommend(
                user_id, k, exclude=exclude, events=[(e.item_id, e.event) for e in events], model=model
            )
        return {
            "user_id": user_id,
            "known_user": user_id in bundle.user_positions,
            "variant": variant,
            "events_since_bundle": len(events),
            "items": items,
        }

    def _expose(self, endpoint: str, answers: list[dict[str, Any]], version: str) -> None:
        if self.exposures is None or self.experiment is None:
            return
        when = self.clock().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for a in answers:
            self.exposures.record(
                a["user_id"],
                a["variant"],
                self.experiment.name,
                endpoint,
                [r["item_id"] for r in a["items"]],
                when,
                version,
            )

    def recommend(self, user_id: str, k: int | None, exclude: list[str]) -> dict[str, Any]:
        """One user's list (known, new, or with events since the bundle)."""
        loaded = self._bundle()
        answer = self._list(loaded, user_id, k or loaded.bundle.k, exclude)
        self._expose("user", [answer], loaded.version)
        return {**answer, "bundle": loaded.version}

    def batch(self, user_ids: list[str], k: int | None, exclude: list[str]) -> dict[str, Any]:
        """Lists for several users, in request order."""
        loaded = self._bundle()
        kk = k or loaded.bundle.k
        answers = [self._list(loaded, u, kk, exclude) for u in user_ids]
        self._expose("batch", answers, loaded.version)
        return {"bundle": loaded.version, "results": answers}

    def _check_items(self, loaded: LoadedBundle, items: list[str], where: str) -> None:
        unknown = [i for i, j in zip(items, loaded.bundle.item_positions.lookup(items), strict=True) if j < 0]
        if unknown:
            shown = ", ".join(f"'{u}'" for u in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ServiceError(
                404,
                f"unknown item id {shown}{more}: not in the catalogue of bundle {loaded.version}",
                ["body", where],
            )

    def session(self, items: list[str], k: int | None, exclude: list[str]) -> dict[str, Any]:
        """A list for an anonymous basket or session of items (most recent first)."""
        loaded = self._bundle()
        self._check_items(loaded, items, "items")
        answer = loaded.bundle.recommend(None, k or loaded.bundle.k, exclude=[*exclude, *items], items=items)
        return {"bundle": loaded.version, "items": answer}

    def similar(self, item_id: str, k: int | None) -> dict[str, Any]:
        """Items similar to ``item_id``."""
        loaded = self._bundle()
        if item_id not in loaded.bundle.item_positions:
            raise ServiceError(
                404,
                f"unknown item id '{item_id}': not in the catalogue of bundle {loaded.version}",
                ["query", "item_id"],
            )
        items = loaded.bundle.similar(item_id, k or loaded.bundle.k)
        return {"item_id": item_id, "bundle": loaded.version, "items": items}

    # -- events ----------------------------------------------------------------------------------
    async def add_events(self, events: list[EventIn]) -> dict[str, Any]:
        """Validate, de-duplicate, log durably (fsync), then reflect the events in memory.

        Raises
        ------
        ServiceError
            422 for an event the shop's layout cannot hold, 503 when the disk is full, failing
            or too far behind (nothing of the request was acknowledged).
        """
        received = self.clock()
        rendered = []
        for i, e in enumerate(events):
            when = e.timestamp or received
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            event = e.event
            if event is None:
                allowed = self.layout.events()
                if allowed is None or len(allowed) != 1:
                    raise ServiceError(422, "event is required: name the event type", ["body", "events", i, "event"])
                event = allowed[0]
            try:
                raw = self.layout.render(e.user_id, e.item_id, event, when, e.value)
            except ValueError as exc:
                raise ServiceError(422, str(exc), ["body", "events", i]) from None
            rendered.append(raw)
        new, duplicates, keys = [], 0, []
        for raw in rendered:
            key = event_key(raw.fields)
            tag = (raw.user_id, key)
            if tag in self._inflight or self.recent.has(raw.user_id, key) or tag in keys:
                duplicates += 1
                continue
            keys.append(tag)
            new.append(raw)
        if not new:
            self.metrics.inc("recctl_serve_events_total", float(duplicates), outcome="duplicate")
            return {"accepted": 0, "duplicates": duplicates, "segment": None}
        self._inflight.update(keys)
        try:
            seq = await self.events.append(new, received)
        except EventLogFull as exc:
            self.metrics.inc("recctl_serve_events_total", float(len(new)), outcome="refused")
            raise ServiceError(503, f"event log busy ({exc}); retry shortly") from None
        except OSError as exc:
            self.metrics.inc("recctl_serve_events_total", float(len(new)), outcome="failed")
            log.error("event log write failed: %s", exc)
            path = exc.filename or self.events.directory
            raise ServiceError(
                503, f"{path}: the event could not be stored ({exc.strerror or exc}); nothing was acknowledged"
            ) from None
        finally:
            self._inflight.difference_update(keys)
        for raw, (_, key) in zip(new, keys, strict=True):
            self.recent.add(raw.user_id, LiveEvent(raw.item_id, raw.event, seq, key))
        self.metrics.inc("recctl_serve_events_total", float(len(new)), outcome="accepted")
        if duplicates:
            self.metrics.inc("recctl_serve_events_total", float(duplicates), outcome="duplicate")
        seg = self.events.open_segment
        return {"accepted": len(new), "duplicates": duplicates, "segment": seg.name if seg else None}

    async def rotate(self) -> dict[str, Any]:
        """Close the open segment now, so it can be ingested."""
        closed = await self.events.rotate()
        return {"closed": closed.name if closed else None}

    # -- status ----------------------------------------------------------------------------------
    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Readiness: a bundle answers; plus the reload state and the event log's."""
        b = self.holder.describe()
        ready = self.holder.current is not None
        body: dict[str, Any] = {
            "ready": ready,
            "bundle": b,
            "events": {
                "directory": str(self.events.directory),
                "open_segment": self.events.open_segment.name if self.events.open_segment else None,
                "pending": self.events.pending,
                "users_in_memory": len(self.recent),
                "replayed_at_start": self._counters.replayed,
            },
            "write_token_configured": self.token is not None,
        }
        return ready, body

    def info(self) -> dict[str, Any]:
        """The bundle's version and model card."""
        loaded = self._bundle()
        meta = {k: v for k, v in loaded.bundle.meta.items() if k != "files"}
        return {"version": loaded.version, "loaded_at": loaded.loaded_at, "card": meta}

    def _describe_metrics(self) -> None:
        m = self.metrics
        m.describe("recctl_serve_requests_total", "counter", "HTTP requests by route and status.")
        m.describe("recctl_serve_request_seconds", "histogram", "Request latency in seconds, by route.")
        m.describe("recctl_serve_events_total", "counter", "Posted events: accepted, duplicate, refused, failed.")
        m.describe("recctl_serve_reloads_total", "counter", "Bundle reload checks: switched or kept.")
        m.describe("recctl_serve_fsync_seconds", "histogram", "Event log fsync latency in seconds.")
        m.describe("recctl_serve_bundle_info", "gauge", "1 for the bundle answering now (labels: version, model).")
        m.describe("recctl_serve_live_users", "gauge", "Users whose events since the bundle are held in memory.")
        m.describe("recctl_serve_events_pending", "gauge", "Events accepted but not yet fsync'd.")
        m.describe("recctl_serve_reload_failures", "gauge", "Bundles refused since the start.")
        m.describe("recctl_serve_gc_seconds", "histogram", "Garbage-collector pauses in seconds, by generation.")
        m.describe(
            "recctl_serve_loop_lag_seconds",
            "histogram",
            "How late the event loop wakes a task (blocking work on its thread, or CPU scheduling).",
        )

        def bundle_info() -> list[tuple[tuple[tuple[str, str], ...], float]]:
            cur = self.holder.current
            if cur is None:
                return []
            return [((("model", str(cur.bundle.meta.get("model"))), ("version", cur.version)), 1.0)]

        m.gauge("recctl_serve_bundle_info", bundle_info)
        m.gauge("recctl_serve_live_users", lambda: [((), float(len(self.recent)))])
        m.gauge("recctl_serve_events_pending", lambda: [((), float(self.events.pending))])
        m.gauge("recctl_serve_reload_failures", lambda: [((), float(self.holder.status.n_failures))])

    def render_metrics(self) -> str:
        """Prometheus text, fsync timings folded in first."""
        fs, self.events.fsync_seconds = self.events.fsync_seconds, []
        for s in fs:
            self.metrics.observe("recctl_serve_fsync_seconds", s)
        while self.gc_pauses:
            generation, pause = self.gc_pauses.popleft()
            self.metrics.observe("recctl_serve_gc_seconds", pause, generation=str(generation))
        return self.metrics.render()


def check_bundle_exists(cfg: Config) -> None:
    """Fail early, naming the command to run, when nothing was published yet."""
    if not (bundle_dir(cfg) / "bundle.json").exists():
        raise ArtifactError(
            f"{bundle_dir(cfg)}: no serving bundle; run `recctl serve-export CONFIG` (with export.bundle: true) first."
        )
