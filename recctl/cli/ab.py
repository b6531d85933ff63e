"""``recctl ab ...``: assign users to variants, plan, preview offline and analyse an A/B test."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from recctl.cli._common import Invocation, RecctlCommand, RecctlGroup, command, err, usage_error
from recctl.cli._logging import LogFormat

ab_app = typer.Typer(
    cls=RecctlGroup,
    help=(
        "A/B tests of recommendation strategies: assign users, plan the sample size, preview "
        "offline, and analyse the outcome log the shop returns.\n\n"
        "The experiment is the `experiment:` section of the config (see configs/ab_example.yaml)."
    ),
    no_args_is_help=True,
)


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise usage_error(f"'{text}' is not a comma-separated list of numbers, e.g. 50,50", option) from None
    if len(values) < 2 or any(v <= 0 for v in values):
        raise usage_error(f"need at least two positive weights, control first; got '{text}'", option)
    return values


def _rates(text: str) -> dict[str, float]:
    rates: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            rates[name.strip()] = float(value)
        except ValueError:
            raise usage_error(f"'{part}' is not NAME=RATE, e.g. control=0.05,treatment=0.055", "--rates") from None
    return rates


def _p(value: float | None) -> str:
    if value is None or value != value:
        return "–"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _srm_banner(cli: Invocation, report: Any) -> None:
    from rich.panel import Panel

    if not report.srm.mismatch:
        return
    if cli.log_format is LogFormat.json:
        cli.warn(f"SAMPLE RATIO MISMATCH: {report.srm.message}")
    else:
        err.print(
            Panel(
                escape(report.srm.message),
                title="SAMPLE RATIO MISMATCH",
                style="bold red",
                border_style="red",
            )
        )


@ab_app.command("assign", cls=RecctlCommand)
@command()
def assign_command(
    cli: Invocation,
    users: Annotated[
        Path,
        typer.Option("--users", help="User ids: .txt (one per line), or CSV/Parquet with a user_id column."),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output .parquet or .csv (default: <workdir>/abtest/assignments.parquet).",
        ),
    ] = None,
    user_column: Annotated[str | None, typer.Option("--user-column", help="User id column of the users file.")] = None,
) -> None:
    """Assign users to the experiment's variants by a salted hash and write the assignments file.

    The same user always gets the same variant for the same salt, on any machine; new users follow the same rule.

    Columns: user_id, variant, bucket, experiment, salt. Rows with an empty user id are skipped.

    \b
    Example:
        recctl ab assign configs/ab_example.yaml --users users.csv
        recctl ab assign configs/ab_example.yaml --users ids.txt \\
            -o assignments.csv --json
    """
    from recctl.abtest.run import run_assign

    result = run_assign(cli.config, users, output, user_column)
    rows = [[name, a["users"], a["share"], a["expected_share"]] for name, a in result["arms"].items()]
    cli.emit(
        result,
        lambda: cli.table(
            f"Assignments of {result['experiment']} (salt {result['salt']})",
            ["arm", "users", "share", "expected"],
            rows,
        ),
    )
    cli.note(f"{result['n_users']:,} users assigned; written to {result['output']}")


@ab_app.command("report", cls=RecctlCommand)
@command()
def report_command(
    cli: Invocation,
    assignments: Annotated[
        Path | None,
        typer.Option(
            "--assignments",
            "-a",
            help="Assignments file (default: from ab assign, else from recommend, in the workdir).",
        ),
    ] = None,
    outcomes: Annotated[
        Path | None,
        typer.Option(
            "--outcomes",
            help="The shop's outcome log (CSV/Parquet); default experiment.outcomes.path.",
        ),
    ] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")] = None,
    fail_on_srm: Annotated[
        bool,
        typer.Option(
            "--fail-on-srm",
            help="Exit with code 4 when a sample ratio mismatch is detected (for CI).",
        ),
    ] = False,
) -> None:
    """Analyse a finished experiment: per-variant metrics, differences to control, sample ratio check.

    Reads the assignments and the outcome log; experiment.outcomes in the config maps its columns.

    Per arm: users, conversion rate, clicks and revenue per user, with confidence intervals.

    Per treatment: the difference to control, p-values (two-proportion z-test; Welch t-test and bootstrap for revenue).

    p-values are Holm-adjusted over the treatments; a chi-square test checks the arm sizes against the weights (SRM).

    \b
    Example:
        recctl ab report configs/ab_example.yaml \\
            --assignments assignments.parquet --outcomes outcomes.csv
        recctl ab report configs/ab_example.yaml --outcomes outcomes.csv \\
            --html ab.html --json --fail-on-srm
    """
    from recctl.abtest.run import run_report

    report = run_report(cli.config, assignments, outcomes, html)
    _srm_banner(cli, report)
    data = report.to_dict()
    failed = fail_on_srm and report.srm.mismatch
    if failed:  # the report is still the answer; the error says why the exit code is 4
        data["error"] = {"type": "DataError", "message": "sample ratio mismatch (--fail-on-srm)", "exit_code": 4}
    cli.emit(data, lambda: _render_report(cli, report))
    for warning in report.warnings:
        if warning != report.srm.message:
            cli.warn(warning)
    if html is not None:
        cli.note(f"HTML report written to {html}")
    if failed:
        cli.exit_with(4, "sample ratio mismatch (--fail-on-srm)")


def _render_report(cli: Invocation, report: Any) -> None:
    conf = f"{100 * (1 - report.alpha):.0f}% CI"
    rows = [
        [
            a.variant,
            a.users,
            a.active_users,
            f"{a.conversion_rate:.4f} [{a.conversion_rate_ci[0]:.4f}, {a.conversion_rate_ci[1]:.4f}]",
            f"{a.clicks_per_user:.3f} [{a.clicks_per_user_ci[0]:.3f}, {a.clicks_per_user_ci[1]:.3f}]",
            f"{a.revenue_per_user:.2f} [{a.revenue_per_user_ci[0]:.2f}, {a.revenue_per_user_ci[1]:.2f}]",
        ]
        for a in report.arms
    ]
    cli.table(
        f"Experiment {report.experiment}: arms",
        ["arm", "users", "active", f"conversion [{conf}]", f"clicks/user [{conf}]", f"revenue/user [{conf}]"],
        rows,
    )
    rows = []
    for c in report.comparisons:
        verdict = ("higher" if c.diff > 0 else "lower") if c.significant else "no detectable difference"
        rel = "" if c.relative_lift is None else f"{100 * c.relative_lift:+.1f}%"
        if c.relative_ci is not None and all(x == x for x in c.relative_ci):
            rel += f" [{100 * c.relative_ci[0]:+.1f}%, {100 * c.relative_ci[1]:+.1f}%]"
        rows.append(
            [
                c.metric,
                c.variant,
                f"{c.diff:+.4f} [{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]",
                rel,
                _p(c.p_value),
                _p(c.p_adjusted),
                verdict,
            ]
        )
    cli.table(
        f"Difference to control '{report.control}'",
        ["metric", "arm", f"diff [{conf}]", f"relative [{conf}]", "p", "p (Holm)", "verdict"],
        rows,
    )
    style = "bold red" if report.srm.mismatch else "green"
    cli.say(f"[{style}]{escape(report.srm.message)}[/]")


@ab_app.command("plan", cls=RecctlCommand)
@command(config="optional")
def plan_command(
    cli: Invocation,
    baseline_rate: Annotated[
        float | None, typer.Option("--baseline-rate", help="Control conversion rate, e.g. 0.05.")
    ] = None,
    baseline_mean: Annotated[
        float | None,
        typer.Option(
            "--baseline-mean",
            help="Control mean of a per-user metric (with --sd), e.g. revenue per user.",
        ),
    ] = None,
    sd: Annotated[float | None, typer.Option("--sd", help="Per-user standard deviation of that metric.")] = None,
    mde: Annotated[
        float | None,
        typer.Option("--mde", help="Effect to detect, relative (0.1 = +10%) unless --absolute."),
    ] = None,
    users: Annotated[
        int | None,
        typer.Option("--users", help="Users available in total: report the MDE instead."),
    ] = None,
    absolute: Annotated[bool, typer.Option("--absolute", help="--mde is an absolute difference.")] = False,
    alpha: Annotated[
        float | None,
        typer.Option(
            "--alpha",
            help="Two-sided level, split over treatments (default: experiment.alpha or 0.05).",
        ),
    ] = None,
    power: Annotated[float, typer.Option("--power", help="Probability of detecting the effect if it is real.")] = 0.8,
    weights: Annotated[
        str | None,
        typer.Option("--weights", help="Traffic weights, control first, e.g. 50,50 or 2,1,1."),
    ] = None,
    holdout: Annotated[float | None, typer.Option("--holdout", help="Share of users held out.")] = None,
    config_option: Annotated[
        Path | None,
        typer.Option("--config", "-c", hidden=True, help="Old spelling of the positional CONFIG."),
    ] = None,
) -> None:
    """Sample size calculator: users needed to detect an effect, or the minimum detectable effect.

    Rates use the two-proportion z-test formula, means the z/Welch formula with the given --sd.

    With several treatments alpha is split by Bonferroni; --users counts the holdout too.

    With a CONFIG, the weights, holdout and alpha come from its experiment section.

    \b
    Example:
        recctl ab plan --baseline-rate 0.05 --mde 0.1
        recctl ab plan --baseline-rate 0.05 --users 40000 --weights 1,1,1
        recctl ab plan configs/ab_example.yaml --baseline-mean 2.4 \\
            --sd 18 --mde 0.05 --json
    """
    if config_option is not None:
        if cli.config_path is not None:
            raise usage_error("give the config once: positionally (recctl ab plan CONFIG ...)", "--config")
        cli.config_path = config_option
    if (baseline_rate is None) == (baseline_mean is None):
        raise usage_error("give exactly one of --baseline-rate or --baseline-mean", "--baseline-rate")
    if baseline_mean is not None and sd is None:
        raise usage_error("--baseline-mean needs --sd (the per-user standard deviation)", "--sd")
    if (mde is None) == (users is None):
        raise usage_error("give exactly one of --mde (to get the sample size) or --users (to get the MDE)", "--mde")
    w = _floats(weights, "--weights")
    names = None
    if cli.config_path is not None:
        from recctl.abtest.run import experiment_of

        experiment = experiment_of(cli.config)
        names = [experiment.control, *experiment.treatments]
        config_weights = [experiment.variants[n].weight for n in names]
        if w is not None and len(w) != len(names):
            raise usage_error(
                f"{len(w)} weights given but experiment '{experiment.name}' in {cli.config_path} has {len(names)} "
                f"variants ({', '.join(names)}); give one weight per variant, control first, or drop --weights",
                "--weights",
            )
        w = w or config_weights
        holdout = experiment.holdout if holdout is None else holdout
        alpha = experiment.alpha if alpha is None else alpha
    from recctl.abtest.power import plan_experiment

    try:
        plan = plan_experiment(
            baseline=baseline_rate if baseline_rate is not None else baseline_mean,  # type: ignore[arg-type]
            weights=w or [1.0, 1.0],
            mde=mde,
            relative=not absolute,
            users=users,
            sd=sd,
            alpha=0.05 if alpha is None else alpha,
            power=power,
            holdout=holdout or 0.0,
            names=names,
        )
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    cli.emit(plan.to_dict(), lambda: _render_plan(cli, plan, mde is not None))


def _render_plan(cli: Invocation, plan: Any, solved_for_n: bool) -> None:
    rows = [[name, n, plan.shares[name]] for name, n in plan.users_per_arm.items()]
    cli.table("Users per arm", ["arm", "users", "share"], rows)
    what = "rate" if plan.metric == "rate" else "mean"
    rel = "" if plan.mde_relative is None else f" ({100 * plan.mde_relative:.1f}% relative)"
    if solved_for_n:
        cli.say(
            f"To detect a change of the {what} {plan.baseline:g} by {plan.mde_absolute:.4g}{rel} "
            f"with power {plan.power:g} at alpha {plan.alpha_per_comparison:.3g} per comparison: "
            f"[bold]{plan.total_users:,} users in total[/]."
        )
    else:
        cli.say(
            f"With {plan.total_users:,} users the minimum detectable effect on the {what} {plan.baseline:g} is "
            f"[bold]{plan.mde_absolute:.4g}{rel}[/] (power {plan.power:g}, alpha "
            f"{plan.alpha_per_comparison:.3g} per comparison)."
        )


@ab_app.command("simulate", cls=RecctlCommand)
@command()
def simulate_command(
    cli: Invocation,
    rates: Annotated[
        str,
        typer.Option("--rates", help="True conversion rate per arm, e.g. control=0.05,treatment=0.06."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Outcome log to write (.csv or .parquet).")],
    assignments: Annotated[
        Path | None,
        typer.Option(
            "--assignments",
            "-a",
            help="Assignments file (default: from ab assign, else from recommend, in the workdir).",
        ),
    ] = None,
    clicks: Annotated[float, typer.Option("--clicks", help="True mean clicks per user.")] = 0.5,
    order_value: Annotated[float, typer.Option("--order-value", help="True mean revenue per purchase.")] = 40.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed; default the config's seed.")] = None,
) -> None:
    """Write a simulated outcome log with known true rates, to rehearse `ab report` before a real experiment.

    \b
    Example:
        recctl ab simulate configs/ab_example.yaml \\
            --rates control=0.05,treatment=0.06 -o outcomes.csv
    """
    parsed = _rates(rates)  # a usage error (exit 2) if malformed
    from recctl.abtest.run import run_simulate

    result = run_simulate(
        cli.config, assignments, output, parsed, clicks_per_user=clicks, order_value=order_value, seed=seed
    )
    cli.emit(result, lambda: cli.say(f"{result['rows']:,} simulated outcome rows written to {result['output']}"))


@ab_app.command("preview", cls=RecctlCommand)
@command()
def preview_command(
    cli: Invocation,
    k: Annotated[int | None, typer.Option("--k", help="Cut-off; default the first of evaluate.k.")] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric", "-m", metavar="NAME", help="Metric to compare (repeatable); default evaluate.metrics."
        ),
    ] = None,
) -> None:
    """Offline preview: evaluate each variant's model on the test split and show the expected difference to control.

    Needs the trained models (run `recctl train` first).

    Uses the evaluation's paired comparison: per-user differences, paired bootstrap interval, paired test, Holm.

    \b
    Example:
        recctl ab preview configs/ab_example.yaml
        recctl ab preview configs/ab_example.yaml --k 10 -m ndcg -m hit_rate
    """
    from recctl.abtest.preview import run_preview

    cfg = cli.config
    with cli.progress() as progress:
        result = run_preview(cfg, k=k, metrics=metric or None, progress=progress)
    cli.emit(result.to_dict(), lambda: _render_preview(cli, result))


def _render_preview(cli: Invocation, result: Any) -> None:
    rows = [
        [name, model, *[result.means[name].get(m) for m in result.metrics]]
        for name, model in result.variant_models.items()
    ]
    cli.table(
        f"Offline preview of {result.experiment} on the test split ({result.n_users:,} users)",
        ["variant", "model", *result.metrics],
        rows,
    )
    rows = [
        [
            c["variant"],
            c["metric"],
            c["control_mean"],
            c["variant_mean"],
            f"{c['diff']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]",
            _p(c["p_value"]),
            _p(c["p_holm"]),
            c["verdict"],
        ]
        for c in result.comparisons
    ]
    cli.table(
        f"Expected difference to control '{result.control}' ({100 * (1 - result.alpha):.0f}% paired bootstrap CI)",
        ["variant", "metric", "control", "variant", "diff [CI]", "p", "p (Holm)", "verdict"],
        rows,
    )
