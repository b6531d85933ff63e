"""A fit's own memory: the resident high-water mark it adds, measured inside the fitting process.

A process's peak (``ru_maxrss``, ``os.wait4``) includes everything it did before the fit: a
fit that needs less than the shop's loading left resident at its peak shows as nothing, and a
fit that needs more shows only the excess. So the child process resets the kernel's
high-water mark (``VmHWM``, by writing ``5`` to ``/proc/self/clear_refs``, Linux) just before
the fit; after it, ``VmHWM - VmRSS before`` is what the fit itself added. Where the reset is
not allowed, the fit's figure is the high-water mark's growth (``VmHWM`` after - before, 0
when the loading's peak was higher).

Used by ``bench_knn`` and ``bench_scale``'s kNN peer column, in their child processes (run with
the repository root as the working directory, so ``benchmarks`` is importable)::

    from benchmarks.fit_memory import FitMemory
    memory = FitMemory()           # just before the fit
    ...fit...
    extra_mb = memory.extra_mb()   # just after
"""

from __future__ import annotations

__all__ = ["FitMemory", "resident_mb"]


def resident_mb() -> tuple[float, float]:
    """This process's ``(VmRSS, VmHWM)`` in MB, from ``/proc/self/status``."""
    with open("/proc/self/status", encoding="ascii") as fh:
        fields = dict(line.split(":", 1) for line in fh)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class FitMemory:
    """Resets the high-water mark when made; :meth:`extra_mb` is the memory added since."""

    def __init__(self) -> None:
        try:  # "5" resets VmHWM to the current VmRSS
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.rss_before, self.hwm_before = resident_mb()

    def extra_mb(self) -> float:
        """MB the fit added to what was resident when this was made (see the module docstring)."""
        _, hwm = resident_mb()
        return hwm - self.rss_before if self.reset else max(hwm - self.hwm_before, 0.0)
