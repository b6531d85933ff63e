"""Nightly retrain and publish with recctl, as an Airflow DAG (Airflow 2.7+ or 3; see docs/scheduling.md).

Copy into your DAGs folder and set ``RECCTL_CONFIG`` (and ``RECCTL`` when recctl is not on the
workers' PATH, e.g. ``/opt/recctl/.venv/bin/recctl``). Three tasks, each one recctl command
with ``--json``:

    retrain (run --skip serve-export) >> gate (history --max-drop) >> publish (serve-export)

recctl's exit code decides what Airflow does with a task:

* 0: success; the task's JSON answer goes to XCom (the publish task's is the published file);
* 8 (another recctl holds the workdir): the task is *skipped*, and so is the rest of the night;
* 3 config, 4 data, 5 artifact, 7 a gate refused (nothing was published): the task *fails
  without retrying* (the same input would fail the same way; yesterday's file stays published);
* 9 (machine fault: disk full, ...) and anything else: a normal failure, retried.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import subprocess
from typing import Any

from airflow.exceptions import AirflowFailException, AirflowSkipException

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.7+
    from airflow import DAG
    from airflow.operators.python import PythonOperator

CONFIG = os.environ.get("RECCTL_CONFIG", "/opt/shop/recctl/shop.yaml")
RECCTL = shlex.split(os.environ.get("RECCTL", "recctl"))
MAX_DROP = os.environ.get("RECCTL_MAX_DROP", "0.10")

#: exit codes that a retry cannot fix
NO_RETRY = {2: "usage", 3: "config", 4: "data", 5: "artifact", 6: "missing extra", 7: "gate refused"}
BUSY = 8


def recctl(*args: str) -> dict[str, Any]:
    """Run one recctl command with ``--json`` and map its exit code to Airflow's outcomes.

    Returns
    -------
    dict
        The command's JSON answer (pushed to XCom by the PythonOperator).
    """
    command = [*RECCTL, *args, "--json", "--log-format", "json", "-q"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    print(done.stderr, end="")  # recctl's JSON log lines, into the task log
    try:
        answer = json.loads(done.stdout) if done.stdout.strip() else {}
    except json.JSONDecodeError:
        answer = {"raw": done.stdout}
    if done.returncode == 0:
        return answer
    message = (answer.get("error") or {}).get("message") or f"exit {done.returncode}"
    text = f"`{shlex.join(command)}` exited {done.returncode}: {message}"
    if done.returncode == BUSY:
        raise AirflowSkipException(text)
    if done.returncode in NO_RETRY:
        raise AirflowFailException(f"{NO_RETRY[done.returncode]} error; {text}")
    raise RuntimeError(text)


with DAG(
    dag_id="recctl_nightly",
    description="Retrain on the latest exports, gate on the run history, publish the lists",
    schedule="17 2 * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,  # never two nights on one workdir
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=10)},
    tags=["recctl"],
) as dag:
    retrain = PythonOperator(
        task_id="retrain",
        python_callable=recctl,
        op_args=["run", CONFIG, "--skip", "serve-export"],
        execution_timeout=dt.timedelta(hours=3),
    )
    gate = PythonOperator(
        task_id="gate",
        python_callable=recctl,
        op_args=["history", CONFIG, "--last", "2", "--max-drop", MAX_DROP],
    )
    publish = PythonOperator(
        task_id="publish",
        python_callable=recctl,
        op_args=["serve-export", CONFIG],
    )
    retrain >> gate >> publish
