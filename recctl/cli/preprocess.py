"""``recctl preprocess``: weights, filtering, id maps, splits and features."""

from __future__ import annotations

from typing import Any

from recctl.cli._common import (
    ConfigArg,
    JsonOpt,
    QuietOpt,
    VerboseOpt,
    emit,
    err,
    handle_errors,
    load,
    manifest_summary,
    out,
    progress_bar,
    setup_logging,
    table,
)


@handle_errors
def preprocess_command(
    config: ConfigArg,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Turn ingested interactions into weighted, indexed train / valid / test splits and features.

    Writes <workdir>/preprocess/: id maps (users, items; catalogue items without interactions are kept), events.

    It also writes the splits train / test / tune_train / valid, item and user features (if configured), manifest.json.

    Tuning fits on tune_train and scores on valid; final models fit on train (tune_train + valid); evaluate reads test.

    \b
    Example:
        recctl preprocess configs/quickstart.yaml
        recctl preprocess configs/quickstart.yaml --json
    """
    setup_logging(verbose, quiet)
    cfg = load(config)
    from recctl.stages.preprocess import run_preprocess

    with progress_bar(not as_json) as progress:
        manifest = run_preprocess(cfg, progress=progress)
    emit(manifest_summary(manifest), as_json, lambda: _render(manifest.summary))
    if not as_json:
        err.print(f"dataset written to {cfg.stage_dir('preprocess')}")


def _render(s: dict[str, Any]) -> None:
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
    out.print(table("Preprocess", ["step", "count"], rows))
    events = split.get("events", {})
    split_rows = [
        [name, events.get(name, events.get("tune_train", 0) + events.get("valid", 0) if name == "train" else 0), n]
        for name, n in s["split_rows"].items()
    ]
    out.print(table(f"Splits ({split.get('strategy')})", ["split", "events", "user-item pairs"], split_rows))
    if "test_start" in split:
        out.print(
            f"test from {split['test_start']}"
            + (f", validation from {split['valid_start']}" if "valid_start" in split else "")
        )
    for kind, info in s.get("features", {}).items():
        out.print(f"{kind} features: {info['shape'][0]:,} x {info['shape'][1]:,} ({info['nnz']:,} non-zeros)")
