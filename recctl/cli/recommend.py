"""``recctl recommend``: top-K lists for every user, some users, a basket of items, or an item."""

from __future__ import annotations

from typing import Annotated, Any

import typer

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

UsersOpt = Annotated[
    str | None,
    typer.Option("--users", help="Comma-separated user ids: recommend only for them (new ids get the fallback)."),
]
ItemsOpt = Annotated[
    str | None, typer.Option("--items", help="Comma-separated item ids of an anonymous visitor (session, basket).")
]
SimilarOpt = Annotated[str | None, typer.Option("--similar-to", help="An item id: list the most similar items.")]
ChangedOpt = Annotated[
    str | None,
    typer.Option(
        "--changed-since", help="`last-update` or an ISO time: re-score only users whose lists can have changed."
    ),
]
KOpt = Annotated[
    int | None, typer.Option("-k", min=1, help="List length for --users/--items/--similar-to (default recommend.k).")
]


def _usage_error(message: str) -> None:
    # a usage error keeps Typer's exit code 2 (handle_errors would report a BadParameter as a bug)
    err.print(f"[bold red]usage error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _list_table(title: str, rows: list[dict[str, Any]]) -> Any:
    names: tuple[str, ...] = ("user_id", "rank", "item_id", "score", "source", "title", "category")
    columns = [c for c in names if rows and c in rows[0]]
    return table(title, columns, [[r.get(c) for c in columns] for r in rows])


@handle_errors
def recommend_command(
    config: ConfigArg,
    users: UsersOpt = None,
    items: ItemsOpt = None,
    similar_to: SimilarOpt = None,
    k: KOpt = None,
    changed_since: ChangedOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Recommend top-K items, excluding what each user already had and applying the business rules.

    Without options: every customer the inputs name (users with events and the customer file, whether or not the models were trained on them), written to <workdir>/recommend/recommendations.parquet (user_id, rank, item_id, score, model, source), streamed block by block on all cores. Every list goes through one list builder: recommend.model, then recommend.fallback fill the K slots in turn; users the models do not know are scored from their history; a user with fewer than K eligible items gets all of them and is listed in short_lists.parquet.

    --users: only those users (ids the shop never named get the no-history list), printed on stdout and written to <workdir>/recommend-users/ (the nightly output is kept).

    --items: for an anonymous visitor known by a few item ids. --similar-to: items similar to one item. Both print the list on stdout.

    --changed-since last-update (or an ISO time): re-score only the users with new events since then, those a new item could reach and new customers, keeping everyone else's rows from the previous run.

    \b
    Example:
        recctl recommend configs/quickstart.yaml
        recctl recommend configs/quickstart.yaml --users C10001,C10002 -k 5
        recctl recommend configs/quickstart.yaml --items P0210,P0861 --json
        recctl recommend configs/quickstart.yaml --similar-to P0210
        recctl recommend configs/quickstart.yaml --changed-since last-update
    """  # noqa: E501
    setup_logging(verbose, quiet)
    modes = [
        name
        for name, value in (("--users", users), ("--items", items), ("--similar-to", similar_to))
        if value is not None
    ]
    if len(modes) > 1:
        _usage_error(f"use only one of --users, --items, --similar-to (got {', '.join(modes)})")
    if changed_since is not None and modes:
        _usage_error(f"--changed-since rewrites the nightly lists; it cannot be combined with {modes[0]}")
    if k is not None and not modes:
        _usage_error(
            "-k applies to --users, --items and --similar-to; for the nightly lists set recommend.k in the config"
        )
    cfg = load(config)
    from recctl.stages import recommend as stage

    if items is not None or similar_to is not None:
        if items is not None:
            query: Any = _split(items)
            frame = stage.recommend_for_items(cfg, query, k)
            title = f"Recommended for items {', '.join(query)}"
        else:
            query = similar_to
            frame = stage.similar_items(cfg, similar_to or "", k)
            title = f"Similar to {similar_to}"
        rows = stage.as_records(frame)
        emit(
            {
                "mode": "items" if items is not None else "similar_to",
                "query": query,
                "k": k or cfg.recommend.k,
                "items": rows,
            },
            as_json,
            lambda: out.print(_list_table(title, rows)),
        )
        return
    if users is not None:
        if k is not None:
            cfg.recommend = cfg.recommend.model_copy(update={"k": k})
        with progress_bar(not as_json) as progress:
            manifest = stage.run_recommend(cfg, users=_split(users), progress=progress)
        rows = stage.as_records(stage.read_user_lists(cfg))
        emit(
            {**manifest_summary(manifest), "rows": rows},
            as_json,
            lambda: out.print(_list_table("Recommendations", rows)),
        )
        return
    with progress_bar(not as_json) as progress:
        manifest = stage.run_recommend(cfg, changed_since=changed_since, progress=progress)
    s = manifest.summary

    def render() -> None:
        origin = s.get("users_by_origin", {})
        body = [
            ["users", s["n_users"]],
            ["  known to the models", origin.get("model", 0)],
            ["  served from their history", origin.get("fallback", 0)],
            ["  customer file only", origin.get("customer_file", 0)],
            ["rows", s["n_rows"]],
            ["k", s["k"]],
            ["short lists (fewer eligible items)", s["n_short_lists"]],
            ["eligible items", s["n_eligible_items"]],
            ["excluded", s["exclusions"]],
        ]
        body += [[f"items from {name}", n] for name, n in s["rows_by_source"].items()]
        if "changed_since" in s:  # --changed-since: only some users were re-scored
            body += [["re-scored users", s["n_rescored"]], ["kept users", s["n_kept"]]]
        out.print(table(f"Recommendations from {s['model']}", ["", "value"], body))
        err.print(f"written to {cfg.stage_dir('recommend')}")

    emit(manifest_summary(manifest), as_json, render)
