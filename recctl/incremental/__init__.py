"""Incremental updates: grow and update trained models with newly appended batches.

* :mod:`~recctl.incremental.batch` — which ingested rows are new; the grown dataset (stable indices);
* :mod:`~recctl.incremental.grow` — resize a fitted LightFM model's tables and optimiser state;
* :mod:`~recctl.incremental.foldin` — solve users with the item side fixed (vectorised);
* :mod:`~recctl.incremental.lightfm_update` — grow + fold in + ``fit_partial`` with replay;
* :mod:`~recctl.incremental.update` — per model kind: exact refresh, approximate update or rebuild;
* :mod:`~recctl.incremental.drift` — the drift guard against a full retrain;
* :mod:`~recctl.incremental.current` — whether ``update/`` or ``train/`` serves;
* :mod:`~recctl.incremental.changes` — re-score only changed users; the export delta file.

The stage is :func:`recctl.stages.update.run_update` (``recctl update``); see
``docs/incremental.md``.
"""
