"""``recctl evaluate``: every model against the baseline on the test split."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from recctl.cli._common import Invocation, command, manifest_summary

#: metrics without a K, shown once
_NO_K = ("auc",)
#: metrics about the lists rather than their accuracy (shown in their own table)
_BEYOND = ("coverage", "novelty", "diversity", "popularity_bias", "user_coverage")


@command()
def evaluate_command(
    cli: Invocation,
    report: Annotated[
        bool | None,
        typer.Option(
            "--report/--no-report",
            help="Also write a self-contained report.html (default: evaluate.report).",
        ),
    ] = None,
) -> None:
    """Evaluate every trained model and the popularity baseline on the test split.

    All models are scored on the same users (those with a test item they had not seen in training) and the same candidate items (the catalogue minus each user's training items).

    Prints the protocol, a table of mean metric@K per model (baseline first) and verdicts against the baseline and the best model (paired bootstrap CI, Wilcoxon test, Holm correction).

    Writes <workdir>/evaluate/metrics.json, per_user.parquet and, with --report, report.html. Metric definitions: docs/metrics.md.

    \b
    Example:
        recctl evaluate configs/quickstart.yaml
        recctl evaluate configs/quickstart.yaml --report
        recctl evaluate configs/quickstart.yaml --json | jq '.metrics.models'
    """  # noqa: E501
    from recctl.stages.evaluate import read_metrics, run_evaluate

    cfg = cli.config
    with cli.progress() as progress:
        manifest = run_evaluate(cfg, report=report, progress=progress)
    metrics = read_metrics(cfg)

    def render() -> None:
        render_metrics(cli, metrics)
        render_decision(cli, manifest.summary.get("decision"))

    cli.emit({**manifest_summary(manifest), "metrics": metrics}, render)
    cli.note(f"metrics written to {cfg.stage_dir('evaluate')}")


def render_decision(cli: Invocation, decision: dict[str, Any] | None) -> None:
    """Print the shipping decision (which model, why, warnings) on stdout."""
    if not decision:
        return
    cli.say(f"[bold]Decision[/]: {decision['headline']}: " + "; ".join(decision["reasons"]) + ".")
    for warning in decision.get("warnings", []):
        cli.say(f"[bold red]Warning[/]: {warning}")


def render_metrics(cli: Invocation, metrics: dict[str, Any]) -> None:
    """Print the protocol, the metric tables and the verdicts of a metrics.json on stdout."""
    proto = metrics["protocol"]
    cli.say(
        f"[bold]Protocol[/]: split [cyan]{proto['split']}[/]; "
        f"{proto['n_users_evaluated']:,} users evaluated ({proto['users']}); "
        f"candidates: {proto['candidate_items']}; excluded: {proto['excluded']} "
        f"({proto['n_test_pairs_excluded']:,} of {proto['n_test_pairs']:,} test pairs); "
        f"K = {', '.join(map(str, proto['ks']))}."
    )
    names = list(metrics.get("model_order") or metrics["models"])
    ks = proto["ks"]
    n_users = proto["n_users_evaluated"]
    for pos, k in enumerate(ks):
        keys = [m for m in proto["metrics"] if m in _NO_K] if pos == 0 else []
        keys += [f"{m}@{k}" for m in proto["metrics"] if m not in _NO_K]
        # accuracy and beyond-accuracy metrics in two tables keeps each narrow enough to read
        groups = [
            [key for key in keys if key.split("@")[0] not in _BEYOND],
            [key for key in keys if key.split("@")[0] in _BEYOND],
        ]
        for group, title in zip(groups, ("Mean metrics", "Beyond accuracy"), strict=True):
            if not group:
                continue
            rows = [
                [_label(name, metrics)] + [metrics["models"][name]["mean"].get(key) for key in group] for name in names
            ]
            cli.table(f"{title} @{k} over {n_users:,} users", ["model", *group], rows)
    if metrics.get("best"):
        cli.say(f"* best by {metrics['primary_metric']}: [bold]{metrics['best']}[/]")
    _render_verdicts(cli, metrics)


def _label(name: str, metrics: dict[str, Any]) -> str:
    label = f"{name} (baseline)" if name == metrics["baseline"] else name
    return label + " *" if name == metrics.get("best") else label


def _render_verdicts(cli: Invocation, metrics: dict[str, Any]) -> None:
    kmax = max(metrics["protocol"]["ks"])
    primary = metrics["primary_metric"]
    shown = [
        c
        for c in metrics["comparisons"]
        if c["metric"] == primary or c["metric"].endswith(f"@{kmax}") or c["metric"] in _NO_K
    ]
    if not shown:
        cli.say("No comparison: only the baseline was evaluated.")
        return
    stats = metrics["statistics"]
    cli.say(
        f"[bold]Verdicts[/]: {stats['test']}, Holm-corrected p < {stats['alpha']}; "
        f"{1 - stats['alpha']:.0%} paired bootstrap CI, {stats['n_bootstrap']} resamples."
    )
    # one narrow table per pair of models, so it stays readable in an 80-column terminal
    pairs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for c in shown:
        pairs.setdefault((c["model"], c["reference"], c["role"]), []).append(c)
    for (model, reference, role), comparisons in pairs.items():
        rows = []
        for c in comparisons:
            ci = "" if c["ci_low"] is None else f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]"
            p_holm = "" if c["p_holm"] is None else f"{c['p_holm']:.3g}"
            diff = f"{c['diff']:+.4f}" if c["diff"] is not None else ""
            rows.append([c["metric"], diff, ci, p_holm, c["verdict"]])
        cli.table(f"{model} vs {reference} ({role})", ["metric", "diff", "CI", "p (Holm)", "verdict"], rows)
