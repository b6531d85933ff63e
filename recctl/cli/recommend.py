"""``recctl recommend``: top-K lists for every user, some users, a basket of items, or an item."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from recctl.cli._common import Invocation, command, manifest_summary, usage_error

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


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _list_table(cli: Invocation, title: str, rows: list[dict[str, Any]]) -> None:
    names: tuple[str, ...] = ("user_id", "rank", "item_id", "score", "source", "title", "category")
    columns = [c for c in names if rows and c in rows[0]]
    cli.table(title, columns, [[r.get(c) for c in columns] for r in rows])


@command()
def recommend_command(
    cli: Invocation,
    users: UsersOpt = None,
    items: ItemsOpt = None,
    similar_to: SimilarOpt = None,
    k: KOpt = None,
    changed_since: ChangedOpt = None,
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
    modes = [
        name
        for name, value in (("--users", users), ("--items", items), ("--similar-to", similar_to))
        if value is not None
    ]
    if len(modes) > 1:
        raise usage_error(f"use only one of --users, --items, --similar-to (got {', '.join(modes)})", modes[1])
    if changed_since is not None and modes:
        raise usage_error(
            f"--changed-since rewrites the nightly lists; it cannot be combined with {modes[0]}", "--changed-since"
        )
    if k is not None and not modes:
        raise usage_error(
            "-k applies to --users, --items and --similar-to; for the nightly lists set recommend.k in the config "
            "(or --set recommend.k=N)",
            "-k",
        )
    from recctl.stages import recommend as stage

    cfg = cli.config

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
        cli.emit(
            {
                "mode": "items" if items is not None else "similar_to",
                "query": query,
                "k": k or stage.recommend_section(cfg).k,
                "items": rows,
            },
            lambda: _list_table(cli, title, rows),
        )
        return
    if users is not None:
        if k is not None:
            cfg.recommend = stage.recommend_section(cfg).model_copy(update={"k": k})
        with cli.progress() as progress:
            manifest = stage.run_recommend(cfg, users=_split(users), progress=progress)
        rows = stage.as_records(stage.read_user_lists(cfg))
        cli.emit({**manifest_summary(manifest), "rows": rows}, lambda: _list_table(cli, "Recommendations", rows))
        return
    with cli.progress() as progress:
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
        cli.table(f"Recommendations from {s['model']}", ["", "value"], body)

    cli.emit(manifest_summary(manifest), render)
    cli.note(f"written to {cfg.stage_dir('recommend')}")
