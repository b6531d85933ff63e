"""docs/scheduling: the cron script runs for real; the workflow and the DAG are checked.

The cron script is run on the sample shop as cron would run it: a first night publishes, a
gate refusal (exit 7) keeps yesterday's file, a busy workdir (exit 8) does nothing. The GitHub
Actions workflow is parsed and every recctl command line in it parsed by the real CLI; the
Airflow DAG is imported (with a stub ``airflow`` when Airflow is not installed) and its exit
code mapping exercised against recctl itself.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from recctl.cli.main import app
from tests.conftest import REPO_ROOT, write_config

SCHEDULING = REPO_ROOT / "docs" / "scheduling"
CLICK_APP = typer.main.get_command(app)


# -- command lines in the examples parse with the real CLI ----------------------------------------
def parse_recctl(args: list[str]) -> None:
    """Parse ``recctl ARGS`` like the CLI would, without running it (raises on a usage error)."""
    command: Any = CLICK_APP
    ctx = command.make_context("recctl", list(args), resilient_parsing=False)
    # walk down the groups to the command, parsing each level's options
    while hasattr(command, "commands"):
        # Click keeps the subcommand's name apart from its arguments (`_protected_args`)
        name, sub, rest = command.resolve_command(ctx, [*getattr(ctx, "_protected_args", []), *ctx.args])
        assert sub is not None, f"unknown command {name}"
        command = sub
        ctx = command.make_context(name, rest, parent=ctx)


def recctl_lines(script: str, env: dict[str, str] | None = None) -> list[list[str]]:
    """The argument lists of every ``recctl ...`` command in a shell script text (``env`` expanded)."""
    found = []
    for name, value in (env or {}).items():
        script = script.replace("${" + name + "}", value).replace("$" + name, value)
    for line in script.replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip() if not line.strip().startswith("#") else ""
        if not line.startswith("recctl "):
            continue
        words = shlex.split(line)
        stop = next((i for i, w in enumerate(words) if w in {">", ">>", "|", "&&", ";", "2>>", "||"}), len(words))
        found.append(words[1:stop])
    return found


# -- GitHub Actions --------------------------------------------------------------------------
def test_the_github_workflow_is_a_valid_nightly_job() -> None:
    text = (SCHEDULING / "github-actions.yml").read_text(encoding="utf-8")
    workflow = yaml.safe_load(text)
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    (cron,) = [entry["cron"] for entry in on["schedule"]]
    fields = cron.split()
    assert len(fields) == 5 and all(re.fullmatch(r"[\d*/,-]+", f) for f in fields), cron
    assert "workflow_dispatch" in on
    assert workflow["concurrency"]["cancel-in-progress"] is False
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    assert all(("uses" in s) != ("run" in s) for s in steps), "each step either uses an action or runs a script"
    for step in steps:
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), step["uses"]
    env = {**job["env"], "GITHUB_STEP_SUMMARY": "summary.md"}
    commands = [args for step in steps if "run" in step for args in recctl_lines(step["run"], env)]
    assert [c[0] for c in commands] == ["run", "history", "history", "serve-export"]
    for args in commands:
        parse_recctl(args)
    assert any("--max-drop" in c for c in commands) and all("--json" in c or "--format" in c for c in commands)


def test_a_wrong_option_would_be_caught() -> None:
    with pytest.raises(Exception, match="no_such"):
        parse_recctl(["run", "c.yaml", "--no_such"])


# -- Airflow ---------------------------------------------------------------------------------
class _Task:
    def __init__(self, task_id: str, python_callable: Any, op_args: list[str], **_: Any) -> None:
        self.task_id, self.python_callable, self.op_args = task_id, python_callable, op_args
        self.downstream: list[_Task] = []
        _StubDAG.current.tasks.append(self)  # type: ignore[union-attr]

    def __rshift__(self, other: _Task) -> _Task:
        self.downstream.append(other)
        return other


class _StubDAG:
    current: _StubDAG | None = None

    def __init__(self, dag_id: str, schedule: str, **kwargs: Any) -> None:
        self.dag_id, self.schedule, self.kwargs, self.tasks = dag_id, schedule, kwargs, []

    def __enter__(self) -> _StubDAG:
        _StubDAG.current = self
        return self

    def __exit__(self, *exc: object) -> None:
        _StubDAG.current = None


class AirflowSkipException(Exception):
    """Stub of airflow.exceptions.AirflowSkipException."""


class AirflowFailException(Exception):
    """Stub of airflow.exceptions.AirflowFailException."""


@pytest.fixture
def dag_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """docs/scheduling/airflow_dag.py, imported against a stub Airflow unless Airflow is installed."""
    if importlib.util.find_spec("airflow") is None:
        stubs = {
            "airflow": {"DAG": _StubDAG},
            "airflow.exceptions": {
                "AirflowSkipException": AirflowSkipException,
                "AirflowFailException": AirflowFailException,
            },
            "airflow.operators": {},
            "airflow.operators.python": {"PythonOperator": _Task},
        }
        for name, attrs in stubs.items():
            module = types.ModuleType(name)
            module.__dict__.update(attrs)
            monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("RECCTL", f"{sys.executable} -m recctl")
    spec = importlib.util.spec_from_file_location("recctl_nightly_dag", SCHEDULING / "airflow_dag.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module


def test_the_airflow_dag_imports_and_chains_three_recctl_tasks(dag_module: types.ModuleType) -> None:
    dag = dag_module.dag
    assert dag.dag_id == "recctl_nightly" and len(dag.schedule.split()) == 5
    tasks = {t.task_id: t for t in dag.tasks}
    assert list(tasks) == ["retrain", "gate", "publish"]
    assert [t.task_id for t in tasks["retrain"].downstream] == ["gate"]
    assert [t.task_id for t in tasks["gate"].downstream] == ["publish"]
    for task in tasks.values():
        parse_recctl([*task.op_args, "--json"])


def test_the_dag_maps_exit_codes_to_airflow_outcomes(dag_module: types.ModuleType, tmp_path: Path) -> None:
    fail = sys.modules["airflow.exceptions"].AirflowFailException
    # a config error (exit 3) fails the task without retries, naming the YAML problem
    with pytest.raises(fail, match="config error.*exited 3.*missing.yaml"):
        dag_module.recctl("info", str(tmp_path / "missing.yaml"))
    # success returns the JSON answer (pushed to XCom)
    answer = dag_module.recctl("ab", "plan", "--baseline-rate", "0.05", "--mde", "0.1")
    assert answer["schema_version"] == 1 and answer["total_users"] > 0


# -- cron: the script, run for real ----------------------------------------------------------------
NIGHTLY = SCHEDULING / "nightly.sh"
pytestmark_cron = pytest.mark.skipif(shutil.which("jq") is None, reason="the cron script needs jq")


def _night(config: Path, *files: Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    full_env = {
        **os.environ,
        "RECCTL": f"{sys.executable} -m recctl",
        "RECCTL_LOG": str(config.parent / "nightly-log.jsonl"),
        **(env or {}),
    }
    done = subprocess.run(
        ["bash", str(NIGHTLY), str(config), *map(str, files)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
        cwd=config.parent,
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, f"one JSON line expected, got:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.returncode, json.loads(lines[0]), done.stderr


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample shop with one small model and a short evaluation (a night takes seconds)."""
    tmp = tmp_path_factory.mktemp("cron")
    raw = yaml.safe_load((REPO_ROOT / "configs" / "quickstart.yaml").read_text())
    models = {"popular": raw["models"]["popular"], "lightfm_warp": {**raw["models"]["lightfm_warp"], "epochs": 5}}
    evaluate = {"k": [10], "metrics": ["precision", "ndcg"], "baseline": "popular", "n_bootstrap": 100, "report": False}
    export = {**raw["export"], "gates": {"max_drop": 0.2}}  # the history gate is the one under test
    export.pop("related", None)
    return write_config(tmp, tune=None, models=models, evaluate=evaluate, export=export)


def _next_day_events(directory: Path) -> Path:
    """A day of new events in the sample export's layout (the last 400 rows, one day later)."""
    lines = (REPO_ROOT / "sample_data" / "events.csv").read_text().splitlines()
    header, rows = lines[0], lines[-400:]
    path = directory / "events-2026-05-01.csv"
    path.write_text("\n".join([header, *[re.sub(r"2026-04-\d\d", "2026-05-01", r) for r in rows]]) + "\n")
    return path


def _pointer(work: Path) -> bytes:
    return next((work / "exports").glob("*_latest.json")).read_bytes()


@pytestmark_cron
@pytest.mark.slow
def test_cron_nights_publish_refuse_and_step_aside(shop: Path) -> None:
    work = shop.parent / "work"
    # night 1: everything runs and the file is published
    code, night, _ = _night(shop)
    assert code == 0, night
    assert night["status"] == "published" and night["step"] == "publish"
    pointer = json.loads(_pointer(work))
    assert (work / "exports" / pointer["file"]).exists() and pointer["file"] in night["detail"]
    log_lines = [json.loads(line) for line in (shop.parent / "nightly-log.jsonl").read_text().splitlines() if line]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in log_lines)

    # night 2: a new day of events is appended, everything from preprocess on re-runs, and a gate
    # nobody passes (the metric must double) refuses: exit 7, yesterday's pointer byte-identical
    before = _pointer(work)
    code, night, _ = _night(shop, _next_day_events(shop.parent), env={"RECCTL_MAX_DROP": "-1"})
    assert code == 7 and night["status"] == "failed" and night["step"] == "gate", night
    assert "allowed drop" in night["detail"]
    assert _pointer(work) == before

    # night 3: nothing new; the gate compares the last two evaluations and lets any drop pass
    code, night, _ = _night(shop, env={"RECCTL_MAX_DROP": "1"})
    assert code == 0 and night["status"] == "published", night
    assert "stages run: none" in night["detail"]  # the retrain skipped every unchanged stage
    history = subprocess.run(
        [sys.executable, "-m", "recctl", "history", str(shop), "--json"], capture_output=True, text=True, check=True
    )
    view = json.loads(history.stdout)
    assert len(view["evaluations"]) == 2 and view["change"] is not None
    assert [r["status"] for r in view["runs"]] == ["ok", "ok", "ok"]
    assert len(view["publications"]) == 2 and view["publications"][-1]["current"] is True

    # night 4, while another recctl holds the workdir: exit 8 at once, nothing done
    with open(work / ".recctl" / "lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        code, night, _ = _night(shop, env={"RECCTL_LOCK_WAIT": "0"})
    assert code == 8 and night["step"] == "retrain", night

    # a broken config stops at the first step with exit 3, naming the key
    broken = shop.parent / "broken.yaml"
    broken.write_text(shop.read_text().replace("seed: 42", "seed: [42]"))
    code, night, _ = _night(broken)
    assert code == 3 and "seed" in night["detail"], night
