"""Request metrics in the Prometheus text exposition format (``GET /metrics``).

A few counters and fixed-bucket histograms kept in plain dicts: every update happens on the
event loop's thread, so no lock is needed and an observation costs well under a microsecond.
The families (all prefixed ``recctl_serve_``) are listed in docs/serving.md.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

__all__ = ["LATENCY_BUCKETS", "Metrics"]

#: latency histogram bucket bounds, seconds (a list from the bundle takes tens of microseconds)
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Histogram:
    __slots__ = ("counts", "sum", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1
        self.sum += value
        self.count += 1


class Metrics:
    """Counters, gauges and histograms rendered as Prometheus text."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(lambda: defaultdict(float))
        self.histograms: dict[str, dict[tuple[tuple[str, str], ...], _Histogram]] = defaultdict(dict)
        self.help: dict[str, tuple[str, str]] = {}
        self.gauges: dict[str, Callable[[], list[tuple[tuple[tuple[str, str], ...], float]]]] = {}

    def describe(self, name: str, kind: str, text: str) -> None:
        """Declare a family (``counter``, ``gauge`` or ``histogram``) and its help text."""
        self.help[name] = (kind, text)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        self.counters[name][tuple(sorted(labels.items()))] += value

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one observation in a histogram."""
        key = tuple(sorted(labels.items()))
        h = self.histograms[name].get(key)
        if h is None:
            h = self.histograms[name][key] = _Histogram()
        h.observe(value)

    def gauge(self, name: str, read: Callable[[], list[tuple[tuple[tuple[str, str], ...], float]]]) -> None:
        """Register a gauge read when the metrics are rendered: ``[(labels, value), ...]``."""
        self.gauges[name] = read

    def render(self) -> str:
        """The exposition text (``text/plain; version=0.0.4``)."""
        out: list[str] = []

        def head(name: str, default_kind: str) -> None:
            kind, text = self.help.get(name, (default_kind, name))
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        for name in sorted(self.counters):
            head(name, "counter")
            for labels, value in sorted(self.counters[name].items()):
                out.append(f"{name}{_labels(labels)} {value:g}")
        for name in sorted(self.gauges):
            head(name, "gauge")
            for labels, value in self.gauges[name]():
                out.append(f"{name}{_labels(labels)} {value:g}")
        for name in sorted(self.histograms):
            head(name, "histogram")
            for labels, h in sorted(self.histograms[name].items()):
                cumulative = 0
                for bound, count in zip((*LATENCY_BUCKETS, float("inf")), h.counts, strict=True):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else f"{bound:g}"
                    out.append(f"{name}_bucket{_labels((*labels, ('le', le)))} {cumulative}")
                out.append(f"{name}_sum{_labels(labels)} {h.sum:.6f}")
                out.append(f"{name}_count{_labels(labels)} {h.count}")
        return "\n".join(out) + "\n"
