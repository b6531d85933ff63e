"""File-based A/B testing: assignment, outcome analysis, power, reports.

* :mod:`recctl.abtest.assign`  - deterministic salted assignment of users to variants
"""

from __future__ import annotations

from recctl.abtest.assign import HOLDOUT, assign_variants, assignment_frame, variant_shares

__all__ = ["HOLDOUT", "assign_variants", "assignment_frame", "variant_shares"]
