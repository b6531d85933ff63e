"""``recctl tune``: search a model's parameters on the validation split."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from recctl.cli._common import Invocation, command, err, manifest_summary
from recctl.cli._logging import LogFormat


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@contextmanager
def _live_display(cli: Invocation) -> Iterator[tuple[Callable[..., None] | None, Callable[..., None] | None]]:
    """Yield ``(progress, on_trial)`` callbacks showing trial i/N, best so far and ETA on stderr.

    On a terminal it is a Rich progress bar; elsewhere (CI logs) one log line per trial.
    """
    if cli.json or cli.quiet:
        yield None, None
        return
    bar = err.is_terminal and cli.log_format is LogFormat.text
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bars = Progress(
        TextColumn("tune"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        disable=not bar,
    )
    task = bars.add_task("tune", total=None, best="")
    state: dict[str, Any] = {"t0": time.monotonic(), "resumed": 0}

    def progress(name: str, completed: float, total: float | None = None) -> None:
        # the first call reports the trials resumed from the checkpoint, before any new one
        # runs: as Rich's first sample it does not count towards the speed, hence the ETA
        if name == "tune" and not state.get("started"):
            state.update(started=True, resumed=int(completed), t0=time.monotonic())
            bars.update(task, completed=completed, total=total)

    def on_trial(result: Any, trials: list[Any], total: int) -> None:
        complete = [r for r in trials if r.status == "complete" and r.value is not None]
        best = max(complete, key=lambda r: (r.value, -r.number)) if complete else None
        best_text = f"best {best.value:.4f} (trial {best.number})" if best else "best -"
        bars.update(task, completed=len(trials), total=total, best=best_text)
        if not bar:
            new = max(len(trials) - state["resumed"], 1)
            eta = (time.monotonic() - state["t0"]) / new * max(total - len(trials), 0)
            value = "-" if result.value is None else f"{result.value:.4f}"
            cli.note(
                f"trial {len(trials)}/{total} (#{result.number}) {result.status} {value} | {best_text} | "
                f"ETA {_eta(eta)}" + (f" | {result.error}" if result.error else "")
            )

    with bars:
        yield progress, on_trial


def _param(value: Any) -> str:
    # parameters span decades (item_alpha 1e-6, learning_rate 0.05): 3 significant digits
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def _render_ranking(cli: Invocation, summary: dict[str, Any]) -> None:
    objective = summary["objective"]
    rows = []
    for entry in summary["ranking"]:
        name = entry["model"]
        m = summary["models"].get(name)
        if m is None:  # the tuned blend
            b = summary["blend"]
            weights = ", ".join(f"{c} {w:g}" for c, w in zip(b["components"], b["weights"], strict=True))
            rows.append([name, "blend", "", entry["value"], "yes", weights, "", ""])
            continue
        p = m["p_value"]
        rows.append(
            [
                name,
                m["kind"],
                m["default_value"],
                m["value"],
                "yes" if m["changed"] else "no",
                "" if p is None else f"p={p:.2g}",
                str(m["n_trials"]),
                f"{m['seconds']:.1f}",
            ]
        )
    title = f"Models ranked on validation ({objective}); picked: {summary['winner']}"
    cols = ["model", "kind", "configured", "kept", "tuned kept", "evidence", "trials", "seconds"]
    cli.table(title, cols, rows)


def _render(cli: Invocation, summary: dict[str, Any], stage_dir: Any) -> None:
    from rich.markup import escape

    objective = summary["objective"]
    if len(summary.get("models_searched", [])) > 1:
        _render_ranking(cli, summary)
    params = sorted({k for t in summary["top_trials"] for k in t["params"]})
    rows = [
        [
            str(t["trial"]),
            t["value"],
            *[_param(t["params"].get(p)) for p in params],
            t["best_epoch"],
            f"{t['duration_s']:.1f}",
            {"complete": "ok"}.get(t["status"], t["status"]),
        ]
        for t in summary["top_trials"]
    ]
    title = f"Top trials of {summary['model']} ({summary['method']}, {objective} on valid)"
    cli.table(title, ["trial", objective, *params, "best epoch", "seconds", "status"], rows)
    counts = f"{summary['n_complete']} complete, {summary['n_pruned']} pruned, {summary['n_failed']} failed"
    cli.say(f"{summary['n_trials']} trials ({counts}; {summary['n_resumed']} resumed from the checkpoint)")
    line = f"best: trial {summary['best_trial']} {objective} = {summary['best_value']:.4f}"
    if summary.get("default_value") is not None:
        line += f" (configured parameters: {summary['default_value']:.4f}, gain {summary['gain_over_default']:+.4f})"
    cli.say(line)
    for skipped in summary.get("skipped", []):
        cli.say(f"[yellow]skipped {escape(skipped['model'])}[/]: {escape(skipped['reason'])}")
    for failure in summary["failures"][:3]:
        cli.say(f"[yellow]trial {failure['trial']} failed[/]: {escape(str(failure['error']))}")
    for hint in summary.get("hints", []):
        cli.say(f"[yellow]hint[/]: {escape(hint)}")
    cli.say(f"[bold]{summary['note']}[/]")
    # soft_wrap: a path must stay on one line to be copied
    cli.say(f"best config: {stage_dir / 'best.yaml'}  (use it with `recctl train` / `recctl run`)", markup=False)


@command()
def tune_command(
    cli: Invocation,
    trials: Annotated[
        int | None, typer.Option("--trials", "-n", min=1, help="Trial budget (overrides tune.n_trials).")
    ] = None,
) -> None:
    """Search every listed model's parameters (tune.models, default all), scored on the validation split (the test split is never read).

    Each model is searched in its own space (tune.spaces.<name>, else its kind's default space) by tune.method: random, grid, or tpe (`pip install 'recctl\\[tune]'`), within a shared tune.timeout_s. A tuned value replaces the configured one only when it beats it for real on validation (paired test); a weighted blend of the best models is tuned too, and the models are ranked.

    Epoch-wise models (LightFM) stop early when the validation metric stops improving; hopeless trials are pruned.

    Writes <workdir>/tune/trials.parquet (every trial) and best.yaml (a config for `recctl train` / `recctl run`).

    Interrupted? Run the same command again: finished trials are resumed, not re-run.

    \b
    Example:
        recctl tune configs/quickstart.yaml
        recctl tune configs/quickstart.yaml --trials 20 --json
    """
    from recctl.stages.tune import run_tune

    cfg = cli.config
    with _live_display(cli) as (progress, on_trial):
        manifest = run_tune(cfg, n_trials=trials, progress=progress, on_trial=on_trial)
    cli.emit(manifest_summary(manifest), lambda: _render(cli, manifest.summary, cfg.stage_dir("tune")))
