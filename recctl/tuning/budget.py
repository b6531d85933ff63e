"""The shared wall-time budget of ``recctl tune`` (``tune.timeout_s``): what is left, who gets it.

The budget holds for the whole search, not only between trials:

* what is left is split between the models still to search by weight: a sequence model
  (``supports_epochs``, e.g. sasrec) weighs :data:`EPOCH_WISE_WEIGHT`, any other model 1, the
  tuned blend :data:`BLEND_WEIGHT`; epoch-wise models are searched last, so what the others
  leave unused goes to them;
* a trial starts only when its estimated cost fits in what is left of its model's share: the
  cost of the model's longest finished trial, or, before the first one, the model's own
  estimate from the data size (:meth:`recctl.models.base.Recommender.estimate_fit_seconds`);
  a model whose first trial would not fit is skipped, and the tune output says so and why
  (unless no model has a result yet: then it runs, so the search has one);
* an epoch-wise trial is cut after the epoch that leaves too little time for another one
  (``TrialSpec.time_limit_s``), and each gets at most ``1 / min(n_trials, EPOCH_WISE_TRIALS)``
  of its model's share, so the sequence model gets several trials, not one long one.

Time is read through :func:`now` (monotonic seconds), which tests replace by a fake clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["BLEND_WEIGHT", "EPOCH_WISE_TRIALS", "EPOCH_WISE_WEIGHT", "Budget", "now"]

#: a sequence model's weight in the split of what is left (1 for any other model)
EPOCH_WISE_WEIGHT = 3.0
#: the tuned blend's weight (it refits the best models and scores weight vectors)
BLEND_WEIGHT = 1.0
#: an epoch-wise search's share is cut into at least this many trials (fewer when n_trials is)
EPOCH_WISE_TRIALS = 3


def now() -> float:
    """Monotonic seconds (the budget's clock; tests replace this function)."""
    return time.monotonic()


@dataclass
class Budget:
    """A wall-time budget started at construction; ``total_s=None`` is unlimited."""

    total_s: float | None
    started: float = field(default_factory=lambda: now())

    def spent(self) -> float:
        """Seconds since the budget started."""
        return now() - self.started

    def left(self) -> float | None:
        """Seconds left (never negative), ``None`` when unlimited."""
        return None if self.total_s is None else max(0.0, self.total_s - self.spent())

    def share(self, weight: float, weights_left: float) -> float | None:
        """The part of what is left due to a task of ``weight`` among tasks weighing ``weights_left``."""
        left = self.left()
        return None if left is None else left * weight / max(weights_left, weight)
