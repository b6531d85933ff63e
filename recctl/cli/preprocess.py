"""``recctl preprocess``: weights, filtering, id maps, splits and features."""

from __future__ import annotations

from typing import Any

from recctl.cli._common import Invocation, command, manifest_summary


@command()
def preprocess_command(cli: Invocation) -> None:
    """Turn ingested interactions into weighted, indexed train / valid / test splits and features.

    Writes <workdir>/preprocess/: id maps (users, items; catalogue items without interactions are kept), events.

    It also writes the splits train / test / tune_train / valid, item and user features (if configured), manifest.json.

    Tuning fits on tune_train and scores on valid; final models fit on train (tune_train + valid); evaluate reads test.

    \b
    Example:
        recctl preprocess configs/quickstart.yaml
        recctl preprocess configs/quickstart.yaml --json
    """
    from recctl.stages.preprocess import run_preprocess

    cfg = cli.config
    with cli.progress() as progress:
        manifest = run_preprocess(cfg, progress=progress)
    cli.emit(manifest_summary(manifest), lambda: _render(cli, manifest.summary))
    cli.note(f"dataset written to {cfg.stage_dir('preprocess')}")


def _render(cli: Invocation, s: dict[str, Any]) -> None:
    split = s.get("split", {})
    rows = [
        ["events in", s["weights"]["events_in"]],
        ["zero-weight events dropped", s["weights"]["zero_weight_events_dropped"]],
        ["events dropped by min counts", s["filter"]["events_dropped"]],
        ["cold test users dropped", split.get("cold_test_users", 0) if split.get("cold_test_users_dropped") else 0],
        ["events kept", s["n_events"]],
        ["users", s["n_users"]],
        ["items (with interactions)", s["n_items_with_interactions"]],
        ["items (catalogue only, cold)", s["n_cold_items"]],
    ]
    cli.table("Preprocess", ["step", "count"], rows)
    events = split.get("events", {})
    split_rows = [[name, _file_events(name, events), n] for name, n in s["split_rows"].items()]
    cli.table(f"Splits ({split.get('strategy')})", ["split", "events", "user-item pairs"], split_rows)
    if "test_start" in split:
        cli.say(
            f"test from {split['test_start']}"
            + (f", validation from {split['valid_start']}" if "valid_start" in split else "")
        )
    for kind, info in s.get("features", {}).items():
        cli.say(f"{kind} features: {info['shape'][0]:,} x {info['shape'][1]:,} ({info['nnz']:,} non-zeros)")


def _file_events(name: str, events: dict[str, int]) -> int:
    """Events in split file ``name`` from the manifest's events per label (``split.events``)."""
    from recctl.data.split import SPLIT_FILES

    return sum(events.get(label, 0) for label in SPLIT_FILES.get(name, (name,)))
