"""Lists of recommendations: the one builder every path uses (see :mod:`recctl.lists.builder`).

Layering: below ``recctl.stages`` (which loads models and data and calls it) and above
``recctl.models`` / ``recctl.ranking`` / ``recctl.rules``; ``recctl.serving`` uses its fill step
for the bundle's answers. Nothing here reads the workdir.
"""

from recctl.lists.builder import ListBuilder, Request
from recctl.lists.fill import CandidateSource, Lists, eligible_capacity, fill_lists, to_arrow

__all__ = ["CandidateSource", "ListBuilder", "Lists", "Request", "eligible_capacity", "fill_lists", "to_arrow"]
