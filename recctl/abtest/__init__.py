"""File-based A/B testing of recommendation strategies.

* :mod:`recctl.abtest.assign`    deterministic salted assignment of users to variants
* :mod:`recctl.abtest.outcomes`  reading assignments and the shop's outcome log
* :mod:`recctl.abtest.stats`     the test statistics (z, Welch, bootstrap, SRM chi-square, Holm)
* :mod:`recctl.abtest.analysis`  per-variant metrics and differences to control
* :mod:`recctl.abtest.power`     sample size and minimum detectable effect
* :mod:`recctl.abtest.report`    the self-contained HTML page
* :mod:`recctl.abtest.preview`   offline preview of the variants on the test split
* :mod:`recctl.abtest.simulate`  outcome logs with known true effects
* :mod:`recctl.abtest.run`       the file-level entry points of ``recctl ab ...``

Only the assignment is imported eagerly (``serve-export`` needs it and nothing else); the
analysis names load on first use so importing the package stays cheap (no scipy).
"""

from __future__ import annotations

import importlib
from typing import Any

from recctl.abtest.assign import HOLDOUT, assign_variants, assignment_frame, variant_shares

__all__ = [
    "HOLDOUT",
    "ABReport",
    "analyze",
    "analyze_files",
    "assign_variants",
    "assignment_frame",
    "plan_experiment",
    "render_html",
    "simulate_experiment",
    "simulate_outcomes",
    "variant_shares",
]

_LAZY = {
    "ABReport": "recctl.abtest.analysis",
    "analyze": "recctl.abtest.analysis",
    "analyze_files": "recctl.abtest.analysis",
    "plan_experiment": "recctl.abtest.power",
    "render_html": "recctl.abtest.report",
    "simulate_experiment": "recctl.abtest.simulate",
    "simulate_outcomes": "recctl.abtest.simulate",
}


def __getattr__(name: str) -> Any:
    """Import the analysis names on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'recctl.abtest' has no attribute {name!r}")
