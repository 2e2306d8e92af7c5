"""winnow's deployments against a real Prefect server, brought up by scripts/local_stack.sh.

The script starts `prefect server start` on 127.0.0.1 (a free port, a throwaway PREFECT_HOME), creates the
process pool, deploys prefect.yaml and starts a worker. The tests run `curate-then-train/default` (a tiny model
built here) and `curate/scheduled` on the sample, wait for Completed, check outputs, artifacts and the schedule
through the Prefect client, and stop the stack, worker before server, leaving no process behind.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterParentFlowRunId,
)
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from test_train import build_tiny_model

from flows.artifacts import counts_rows
from flows.scheduled import earlier_runs, with_previous_runs
from pipeline.stages.dedup import INDEX_FILE
from schemas.config import CurationConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
STACK = ROOT / "scripts" / "local_stack.sh"
PREFECT = Path(sys.executable).with_name("prefect")
LIGHT = {"language": {"enabled": False}, "semantic": {"threshold": None}, "category": {"prototype_similarity": None},
         "select": {"budget": 40}}
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to prove no process is left behind")


def test_earlier_runs_are_the_finished_runs_named_before_this_one(tmp_path):
    for name, finished in [("2024-01-01", True), ("2024-01-02", False), ("2024-01-03", True), ("2024-01-05", True)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / INDEX_FILE).touch()
        if finished:
            (tmp_path / name / "manifest.json").write_text("{}")
    assert earlier_runs(tmp_path, "2024-01-04") == [str(tmp_path / "2024-01-01"), str(tmp_path / "2024-01-03")]
    assert earlier_runs(tmp_path, "2024-01-01") == []
    given = CurationConfig(dedup={"previous_runs": ["/elsewhere", str(tmp_path / "2024-01-01")]}, select={"budget": 7})
    merged = with_previous_runs(given, earlier_runs(tmp_path, "2024-01-04"))
    assert merged.dedup.previous_runs == ["/elsewhere", str(tmp_path / "2024-01-01"), str(tmp_path / "2024-01-03")]
    assert merged.select == given.select and merged.dedup.threshold == given.dedup.threshold


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Every live process in session `sid` (the script, server, worker and the flow runs it launched)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The local stack; yields (api_url, env). Teardown fails the test if stopping left any process behind."""
    home = tmp_path_factory.mktemp("prefect-home")
    log = home / "stack.log"
    env = os.environ | {
        "PORT": str(free_port()), "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_SERVER_UI_ENABLED": "false", "OMP_NUM_THREADS": "1",
    }
    env.pop("PREFECT_API_URL", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", str(STACK)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    left = []
    try:
        ready = wait_for(lambda: proc.poll() is not None or "winnow stack ready" in log.read_text(), 240, "the stack")
        assert ready and proc.poll() is None, f"stack exited early:\n{log.read_text()}"
        url = f"http://127.0.0.1:{env['PORT']}/api"
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url, env | {"PREFECT_API_URL": url}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass
        left = session_pids(proc.pid)
        for pid in left:  # the script failed to clean up: kill what remains so nothing outlives the test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert not left, f"processes left running after the stack stopped: {left}\n{log.read_text()[-3000:]}"
    assert "winnow stack stopped" in log.read_text()


def descendants(client, run_id) -> list:
    """A flow run and its subflow runs, recursively."""
    runs = [client.read_flow_run(run_id)]
    children = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))
    for child in children:
        runs += descendants(client, child.id)
    return runs


def artifacts_of(client, run_id) -> dict:
    """Artifacts attached to a flow run or any of its subflows, by key."""
    ids = [r.id for r in descendants(client, run_id)]
    found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    return {a.key: a for a in found if a.key}


def check_curate_artifacts(artifacts: dict, manifest: dict) -> None:
    table = artifacts["curate-counts"].data
    assert (json.loads(table) if isinstance(table, str) else table) == counts_rows(manifest)
    summary = artifacts["curate-summary"].data
    assert f"{manifest['counts']['curated']:,} curated of {manifest['counts']['input']:,}" in summary
    assert manifest["outputs"]["curated.parquet"] in summary


def test_scheduled_deployment_has_its_daily_schedule(stack):
    """The cron schedule from prefect.yaml is live: the server's scheduler creates the next days' runs at 06:00 UTC."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("curate/scheduled")
        (schedule,) = deployment.schedules
        assert schedule.active and schedule.schedule.cron == "0 6 * * *" and schedule.schedule.timezone == "UTC"
        assert deployment.work_pool_name == "winnow" and deployment.enforce_parameter_schema
        assert {"inputs", "runs_root", "config"} <= set(deployment.parameter_openapi_schema["properties"])
        only_this = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]))
        runs = wait_for(lambda: client.read_flow_runs(flow_run_filter=only_this), 60, "the scheduler to create runs")
        starts = sorted(r.expected_start_time.astimezone(timezone.utc) for r in runs)
        assert all(s.time().isoformat() == "06:00:00" and s > datetime.now(timezone.utc) for s in starts)
        assert all(b - a == timedelta(days=1) for a, b in zip(starts, starts[1:]))
        # Paused from here on, so no 06:00 run can start while the other tests use the worker.
        client.update_deployment_schedule(deployment.id, schedule.id, active=False)


def test_curate_then_train_then_scheduled_curate_on_the_worker(stack, tmp_path):
    _, env = stack
    runs_root = tmp_path / "runs"
    first = runs_root / "2024-01-01"
    tiny = build_tiny_model(tmp_path / "tiny")
    params = {"inputs": [str(SAMPLE)], "out": str(first), "curation": LIGHT,
              "train": {"model": str(tiny), "max_steps": 2, "batch_size": 4, "max_length": 256, "overlong": "truncate",
                        "eval_fraction": 0.1, "logging_steps": 1}}
    cli = subprocess.run([str(PREFECT), "deployment", "run", "curate-then-train/default", "--params", json.dumps(params),
                          "--watch", "--watch-timeout", "600"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=660)
    assert cli.returncode == 0 and "Completed" in cli.stdout, cli.stdout + cli.stderr

    run_id = next(line.split("UUID:")[1].strip() for line in cli.stdout.splitlines() if "UUID:" in line)
    manifest = json.loads((first / "manifest.json").read_text())
    trained = json.loads((first / "model" / "train_manifest.json").read_text())
    assert manifest["counts"]["curated"] > 0 and trained["steps"] == 2 and trained["curated"] == str(first / "curated.parquet")
    assert trained["examples"]["usable"] == manifest["counts"]["curated"]
    with get_client(sync_client=True) as client:
        runs = descendants(client, run_id)
        assert all(r.state.is_completed() for r in runs) and len(runs) == 4  # itself, curate (and its curate-stages), train
        artifacts = artifacts_of(client, run_id)
        check_curate_artifacts(artifacts, manifest)
        losses = artifacts["train-losses"].data
        losses = json.loads(losses) if isinstance(losses, str) else losses
        assert [row["step"] for row in losses if row["kind"] == "train (logged step)"] == [1, 2]
        assert {"step": 2, "loss": trained["train_loss"], "kind": "train (run mean)"} in losses

    # The scheduled deployment, as if its 06:00 run of 2 January 2024 starts now: it curates into runs_root/2024-01-02
    # and drops the records the 1 January run already curated.
    run = run_deployment("curate/scheduled", parameters={"inputs": [str(SAMPLE)], "runs_root": str(runs_root), "config": LIGHT},
                         scheduled_time=datetime(2024, 1, 2, 6, tzinfo=timezone.utc), timeout=300, poll_interval=1)
    assert run.state.is_completed(), run.state
    second = runs_root / "2024-01-02"
    later = json.loads((second / "manifest.json").read_text())
    with get_client(sync_client=True) as client:
        runs = descendants(client, run.id)
        assert len(runs) == 3 and all(r.state.is_completed() for r in runs)  # itself, its curate subflow and curate-stages
        check_curate_artifacts(artifacts_of(client, run.id), later)
    assert later["config"]["dedup"]["previous_runs"] == [str(first)]
    earlier_ids = set(pl.read_parquet(first / "curated.parquet")["id"])
    assert later["counts"]["curated"] > 0 and not earlier_ids & set(pl.read_parquet(second / "curated.parquet")["id"])
