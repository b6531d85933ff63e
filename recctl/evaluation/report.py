"""A self-contained HTML report of an evaluation that starts with a decision.

:func:`render_report` is a pure function of the ``metrics.json`` content and an optional
context (the decision of :func:`recctl.evaluation.decision.decide`, the serving model, the
previous run, costs, tuning and who was evaluated; :func:`recctl.stages.evaluate.report_context`
gathers it), so a report can be rebuilt from a finished evaluation without re-running it.

From the top: **the decision** (which model to ship and why, with the primary metric against
the baseline, the serving model and the previous run, each with its interval), tuned vs
default, costs, **who was evaluated and who was not**, sample lists with product titles for a
few users, then the evidence: the comparison table and its forest plot, mean metrics, metrics
against K, user segments, popularity bands and the popularity of what each model recommends.

The page and the charts come from :mod:`recctl.htmlreport` (the one layer the A/B report uses
too): one file, inline CSS and SVG charts with axes (matplotlib, the ``report`` extra; a note
replaces each chart without it), no script, no network, no timestamp.
"""

from __future__ import annotations

from typing import Any

from recctl.htmlreport import (
    banner,
    bar_chart,
    definitions,
    esc,
    forest_plot,
    line_chart,
    num,
    page,
    pvalue,
    table,
)

__all__ = ["render_report"]


def _verdict_cell(verdict: str | None) -> str:
    verdict = verdict or "–"
    cls = {"better": "better", "worse": "worse", "higher": "higher", "lower": "lower"}.get(verdict, "nodiff")
    return f'<span class="{cls}">{esc(verdict)}</span>'


def _interval(values: Any) -> str:
    if not values or values[0] is None or values[1] is None:
        return "–"
    return f"[{num(values[0])}, {num(values[1])}]"


def _diff(c: dict[str, Any] | None) -> str:
    if not c or c.get("diff") is None:
        return "–"
    return f"{c['diff']:+.4f} [{num(c['ci_low'])}, {num(c['ci_high'])}]"


def _seconds(value: Any) -> str:
    return "–" if value is None else f"{value:,.1f} s"


def _comparison_row(label: str, comparison: dict[str, Any]) -> list[str]:
    """One evidence row: this run against a reference model (its mean, difference, verdict)."""
    verdict = _verdict_cell(comparison["verdict"]) + f" (p Holm {pvalue(comparison['p_holm'])})"
    return [label, num(comparison["reference_mean"]), "", _diff(comparison), verdict]


def _decision_section(metrics: dict[str, Any], context: dict[str, Any]) -> list[str]:
    decision = context.get("decision")
    if not decision:
        return []
    primary = decision["primary_metric"]
    ev = decision["evidence"]
    conf = f"{1 - metrics['statistics']['alpha']:.0%}"
    rows = [
        ["this run", num(ev.get("mean")), _interval(ev.get("interval")), "", ""],
    ]
    base = ev.get("vs_baseline")
    if base:
        rows.append(_comparison_row(f"vs baseline {esc(base['reference'])}", base))
    serving = ev.get("vs_serving")
    if serving:
        rows.append(_comparison_row(f"vs {esc(serving['reference'])} (serving now)", serving))
    elif context.get("serving_model") == ev["model"]:
        rows.append([f"{esc(ev['model'])} serves now", "", "", "", "the same model"])
    prev = ev.get("previous")
    if prev:
        change = prev.get("change")
        rows.append(
            [
                f"previous run ({esc(prev.get('finished_at') or '?')})",
                num(prev["mean"]),
                _interval(prev.get("interval")),
                "–" if change is None else f"{change:+.4f}",
                "not paired: each run's own interval",
            ]
        )
    else:
        rows.append(["previous run", "–", "", "", "no earlier evaluate run in this workdir"])
    kind = "decision"
    reasons = "".join(f"<li>{esc(r)}.</li>" for r in decision["reasons"])
    warnings = "".join(f"<li><b>{esc(w)}</b></li>" for w in decision["warnings"])
    body = f"<h2>Decision: {esc(decision['headline'])}</h2><ul>{reasons}{warnings}</ul>" + table(
        [f"{primary} of {ev['model']}", "mean", f"{conf} interval", f"difference [{conf} CI]", "verdict"],
        rows,
        text_columns=(4,),
    )
    return [banner("bad" if decision["warnings"] else kind, body)]


def _tune_all_section(tuning: dict[str, Any]) -> list[str]:
    """``metrics.json["tuning"]`` (tune-all): default vs tuned per model, on validation and on test."""
    metric = tuning.get("metric", "")
    rows = [
        [
            esc(name) + (" <b>(winner)</b>" if name == tuning.get("winner") else ""),
            num(r.get("valid_default")),
            num(r.get("valid_tuned")),
            pvalue(r.get("valid_p_value")),
            num(r.get("test_default")),
            num(r.get("test_tuned")),
            esc(", ".join(f"{k}={v}" for k, v in (r.get("params") or {}).items())),
        ]
        for name, r in tuning.get("models", {}).items()
    ]
    if not rows:
        return [f'<h2>Tuned vs default</h2><p class="note">{esc(tuning.get("note", "no model changed by tuning"))}</p>']
    return [
        "<h2>Tuned vs default</h2>"
        + table(
            [
                "model",
                f"default {metric} (valid)",
                "tuned (valid)",
                "p (valid)",
                "default (test)",
                "tuned (test)",
                "tuned parameters",
            ],
            rows,
            text_columns=(6,),
        )
        + f'<p class="note">{esc(tuning.get("note", ""))}</p>'
    ]


def _tuning_section(metrics: dict[str, Any], context: dict[str, Any]) -> list[str]:
    if metrics.get("tuning"):
        return _tune_all_section(metrics["tuning"])
    tuning = context.get("tuning")
    if not tuning:
        return ['<h2>Tuned vs default</h2><p class="note">No tuning run in this workdir (recctl tune).</p>']
    default = tuning.get("default_value")
    best = tuning.get("best_value")
    gain = tuning.get("gain_over_default")
    in_use = tuning.get("tuned_in_use")
    params = ", ".join(f"{k}={v}" for k, v in (tuning.get("best_params") or {}).items())
    rows = [
        [
            esc(tuning.get("model")),
            esc(tuning.get("objective")),
            num(default),
            num(best),
            "–" if gain is None else f"{gain:+.4f}",
            esc(params),
            "yes" if in_use else "no: recctl train &lt;workdir&gt;/tune/best.yaml",
        ]
    ]
    return [
        "<h2>Tuned vs default</h2>"
        + table(
            ["model", "objective", "default", "tuned", "gain", "best parameters", "evaluated here"],
            rows,
            text_columns=(5, 6),
        )
        + f'<p class="note">Scored on the validation split by {esc(tuning.get("method", "?"))} search over '
        f"{esc(tuning.get('n_trials', '?'))} trials; the test split was not used.</p>"
    ]


def _costs_section(names: list[str], context: dict[str, Any]) -> list[str]:
    costs = context.get("costs") or {}
    if not costs:
        return []
    rows = [
        [esc(n), _seconds(costs.get(n, {}).get("fit_seconds")), _seconds(costs.get(n, {}).get("score_seconds"))]
        for n in names
    ]
    return [
        "<h2>Costs</h2>"
        + table(["model", "fit (train split)", "rank evaluated users"], rows)
        + '<p class="note">Wall-clock seconds on the machine that ran train and evaluate.</p>'
    ]


def _population_section(metrics: dict[str, Any], context: dict[str, Any]) -> list[str]:
    proto = metrics["protocol"]
    pop = context.get("population") or {
        "users_in_train": proto["n_users_total"],
        "with_test_items": proto["n_users_with_test_items"],
        "evaluated": proto["n_users_evaluated"],
    }
    total, with_test, evaluated = pop["users_in_train"], pop["with_test_items"], pop["evaluated"]
    rows = [
        ["evaluated: at least one relevant test item not seen in training", num(evaluated)],
        ["not evaluated: no interaction in the test split", num(total - with_test)],
        ["not evaluated: every test item was already a training item", num(with_test - evaluated)],
    ]
    if pop.get("cold_test_users_dropped") is not None:
        rows.append(
            [
                "not evaluated: new in the test period (no training history; dropped by preprocess)",
                num(pop["cold_test_users_dropped"]),
            ]
        )
    if pop.get("events_dropped_by_min_counts"):
        rows.append(
            [
                "events removed before the split by the min-count filters (preprocess.min_*)",
                num(pop["events_dropped_by_min_counts"]),
            ]
        )
    share = f" ({evaluated / total:.0%})" if total else ""
    return [
        "<h2>Who was evaluated</h2>"
        + f"<p>{num(evaluated)} of {num(total)} users with training history were evaluated{share}.</p>"
        + table(["users", "count"], rows, text_columns=(0,))
    ]


def _item_text(item: dict[str, Any]) -> str:
    title = item.get("title")
    label = esc(title) if title else esc(item["item_id"])
    extra = f' <span class="muted">{esc(item["item_id"])}</span>' if title else ""
    mark = ' <span class="hit">✓</span>' if item.get("hit") else ""
    return f"{label}{extra}{mark}"


def _samples_section(metrics: dict[str, Any], names: list[str]) -> list[str]:
    samples = metrics.get("samples") or {}
    users = samples.get("users") or []
    if not users:
        return []
    parts = [
        "<h2>Sample lists</h2>",
        '<p class="note">Three evaluated users (a light, a typical and a heavy one by training history) with '
        f"each model's top {samples.get('k', 5)}; ✓ marks a held-out item the user did interact with.</p>",
    ]
    for user in users:
        depth = max(len(user["history"]), len(user["relevant"]), *(len(v) for v in user["lists"].values()))
        columns = [("training items (top weights)", user["history"]), ("held out (relevant)", user["relevant"])]
        columns += [(n, user["lists"].get(n, [])) for n in names if n in user["lists"]]
        rows = [[_item_text(col[i]) if i < len(col) else "" for _, col in columns] for i in range(depth)]
        parts.append(
            f"<h3>User {esc(user['user_id'])}: {user['n_train_items']:,} training items, "
            f"{user['n_relevant']:,} held out</h3>"
            + table([c for c, _ in columns], rows, text_columns=tuple(range(len(columns))))
        )
    return parts


def render_report(metrics: dict[str, Any], context: dict[str, Any] | None = None) -> str:
    """Render the evaluation in ``metrics`` (the ``metrics.json`` content) as one HTML page.

    Parameters
    ----------
    metrics
        What :func:`recctl.stages.evaluate.evaluate_models` returns (and ``metrics.json`` holds).
    context
        Optional: ``decision`` (:func:`recctl.evaluation.decision.decide`), ``serving_model``,
        ``costs``, ``tuning``, ``population`` (see :func:`recctl.stages.evaluate.report_context`).
        Without it the page starts at the evidence.

    Returns
    -------
    str
        A complete HTML document with inline CSS and SVG, no external resource.
    """
    context = context or {}
    proto = metrics["protocol"]
    models = metrics["models"]
    names = list(metrics.get("model_order") or models)
    ks = proto["ks"]
    kmax = max(ks)
    primary = metrics["primary_metric"]
    stats = metrics["statistics"]
    conf = f"{1 - stats['alpha']:.0%}"
    title = f"recctl evaluation: {metrics.get('experiment', '')}".rstrip(": ")
    sections = [
        f'<p class="note">Baseline: <b>{esc(metrics["baseline"])}</b>; best by {esc(primary)}: '
        f"<b>{esc(metrics.get('best'))}</b>. Metric definitions: docs/metrics.md.</p>",
        *_decision_section(metrics, context),
    ]
    if context or metrics.get("tuning"):
        sections += _tuning_section(metrics, context)
    sections += _costs_section(names, context)
    sections += _population_section(metrics, context)
    sections += _samples_section(metrics, names)

    # protocol
    sections.append(
        "<h2>Protocol</h2>"
        + definitions(
            [
                ("Split", esc(proto["split"])),
                ("Users evaluated", f"{proto['n_users_evaluated']:,} of {proto['n_users_total']:,}"),
                ("Who is evaluated", esc(proto["users"])),
                ("Candidate items", esc(proto["candidate_items"])),
                (
                    "Excluded",
                    esc(
                        f"{proto['excluded']} ({proto['n_test_pairs_excluded']:,} of {proto['n_test_pairs']:,} "
                        "test pairs were training items and are not counted as relevant)"
                    ),
                ),
                ("Relevance", esc(proto["relevance"])),
                ("K", esc(", ".join(map(str, ks)))),
                ("Ties", esc(proto["ties"])),
                (
                    "Comparison",
                    esc(
                        f"{stats['test']}; {stats['interval']}; {stats['correction']}; alpha {stats['alpha']}; "
                        f"seed {stats['seed']}"
                    ),
                ),
                ("Popularity bands", esc(proto["popularity_bands"]["definition"])),
                ("User segments", esc(proto["user_segments"]["definition"])),
            ]
        )
    )

    # comparison
    comps = [
        c
        for c in metrics["comparisons"]
        if c["metric"] == primary or c["metric"].endswith(f"@{kmax}") or c["metric"] == "auc"
    ]
    if comps:
        rows = [
            [
                esc(c["model"]),
                f"{esc(c['reference'])} ({esc(c['role'])})",
                esc(c["metric"]),
                num(c["model_mean"]),
                num(c["reference_mean"]),
                f"{c['diff']:+.4f}" if c["diff"] is not None else "–",
                f"[{num(c['ci_low'])}, {num(c['ci_high'])}]",
                pvalue(c["p_value"]),
                pvalue(c["p_holm"]),
                _verdict_cell(c["verdict"]),
            ]
            for c in comps
        ]
        forest = [
            (f"{c['model']} vs {c['reference']}", c["diff"], c["ci_low"], c["ci_high"], c["verdict"])
            for c in comps
            if c["metric"] == primary
        ]
        sections.append(
            f"<h2>Comparison at K={kmax}</h2>"
            + table(
                [
                    "model",
                    "vs",
                    "metric",
                    "model mean",
                    "reference mean",
                    "diff",
                    f"{conf} CI",
                    "p",
                    "p (Holm)",
                    "verdict",
                ],
                rows,
            )
            + forest_plot(f"Difference in {primary} with {conf} CI", forest, x_label=f"{primary} difference")
        )
    else:
        sections.append("<h2>Comparison</h2><p>Only the baseline was evaluated.</p>")

    # mean metrics: one row per metric, one column per model (fits any number of K)
    keys = list(next(iter(models.values()))["mean"]) if models else []
    rows = [[esc(k)] + [num(models[n]["mean"].get(k)) for n in names] for k in keys]
    headers = [n + (" (baseline)" if n == metrics["baseline"] else "") for n in names]
    sections.append("<h2>Mean metrics</h2>" + table(["metric", *headers], rows))

    # metric vs K
    curve_metrics = [m for m in proto["metrics"] if m != "auc"]
    if len(ks) > 1 and curve_metrics:
        charts = [
            line_chart(
                f"{m} against K",
                ks,
                {n: [models[n]["mean"].get(f"{m}@{k}") for k in ks] for n in names},
                x_label="K",
                y_label=m,
            )
            for m in curve_metrics
        ]
        sections.append('<h2>Metrics against K</h2><div class="charts">' + "".join(charts) + "</div>")

    # segments
    seg = metrics.get("segments", {})
    user_rows = seg.get("users", {})
    if user_rows:
        segments = [r["segment"] for r in user_rows[names[0]]]
        values = {
            n: [next((r.get(primary) for r in user_rows[n] if r["segment"] == s), None) for s in segments]
            for n in names
        }
        thresholds = proto["user_segments"]
        note = (
            f'<p class="note">short: at most {esc(thresholds.get("short_max"))} training items; long: at least '
            f"{esc(thresholds.get('long_min'))}; new: none.</p>"
        )
        table_rows = [
            [esc(s), num(next(r["n_users"] for r in user_rows[names[0]] if r["segment"] == s))]
            + [num(values[n][j]) for n in names]
            for j, s in enumerate(segments)
        ]
        sections.append(
            "<h2>User segments</h2>"
            + note
            + bar_chart(f"{primary} by user history", segments, values, y_label=primary)
            + table(["segment", "users", *names], table_rows)
        )
    band_rows = seg.get("item_bands", {})
    if band_rows:
        bands = [r["band"] for r in band_rows[names[0]]]
        key = f"recall@{kmax}"
        table_rows = [
            [esc(b), num(band_rows[names[0]][j]["n_users"])] + [num(band_rows[n][j].get(key)) for n in names]
            for j, b in enumerate(bands)
        ]
        sections.append(
            "<h2>Item popularity bands</h2>"
            '<p class="note">Recall restricted to the relevant items of each band; a user counts in a band '
            "when they have a relevant item in it.</p>"
            + bar_chart(
                f"{key} on relevant items of each popularity band",
                bands,
                {n: [r.get(key) for r in band_rows[n]] for n in names},
                y_label=key,
            )
            + table(["band", "users", *names], table_rows)
        )

    # popularity distribution of recommendations
    pops = {n: models[n].get("recommendation_popularity") for n in names if models[n].get("recommendation_popularity")}
    if pops:
        deciles = [f"{10 * (i + 1)}%" for i in range(len(next(iter(pops.values()))["deciles"]))]
        sections.append(
            "<h2>Popularity of recommendations</h2>"
            '<p class="note">Decile 10% = the tenth of the catalogue with the most training users.</p>'
            '<div class="charts">'
            + bar_chart(
                f"Share of top-{kmax} items by popularity decile",
                deciles,
                {n: p["deciles"] for n, p in pops.items()},
                y_label="share of recommended items",
            )
            + bar_chart(
                f"Share of top-{kmax} items by popularity band",
                ["head", "torso", "tail"],
                {n: [p["bands"].get(b) for b in ("head", "torso", "tail")] for n, p in pops.items()},
                y_label="share of recommended items",
            )
            + "</div>"
        )
    return page(title, sections)
