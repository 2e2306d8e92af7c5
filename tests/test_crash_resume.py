"""A curate run that dies mid-way, rerun, ends with the outputs of an uninterrupted run, and never shows a half-written file.

The crash point is the stage output written in the middle of the run (a step's Parquet, or the ledger when no
step is registered): a subprocess is SIGKILLed while that file is half written, or the write fails in-process.
"""

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

import pipeline.runner as runner_module
from flows.curate import curate
from pipeline.plan import STAGES
from schemas.config import CurationConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
CONFIG = CurationConfig(language={"enabled": False}, semantic={"threshold": None}, category={"prototype_similarity": None},
                        select={"budget": 40})
OUTPUTS = ("ledger.parquet", "curated.parquet", "quarantine.parquet")

# Runs the curate flow, but the write of TARGET leaves half the bytes in its temp file and hangs there.
CRASHER = """
import sys, time
from pathlib import Path
import flows.curate as curate_module
import pipeline.runner as runner_module
from pipeline.io import write_atomic
from schemas.config import CurationConfig

sample, out, target, marker, config = sys.argv[1:]
real = runner_module.write_parquet

def half_written_then_hang(frame, path):
    if not Path(path).name.startswith(target):
        return real(frame, path)
    def write(tmp):
        frame.write_parquet(tmp)
        data = Path(tmp).read_bytes()
        Path(tmp).write_bytes(data[: len(data) // 2])
        Path(marker).touch()
        time.sleep(600)
    return write_atomic(path, write)

runner_module.write_parquet = half_written_then_hang
curate_module.curate(inputs=[sample], out=out, config=CurationConfig.model_validate_json(config))
"""


def stage_names() -> list[str]:
    """File-name prefixes of the outputs a run writes, in order: ingest, each stage, then the ledger."""
    return ["ingest-", *(f"{stage.name}-" for stage in STAGES), "ledger.parquet"]


TARGET = stage_names()[len(stage_names()) // 2]


def files(run: Path) -> dict[str, bytes]:
    """Every file under a run dir but manifest.json and report.html (they show paths and timings), by relative path."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", "report.html")}


def assert_nothing_half_written(run: Path) -> None:
    """Every file under its final name reads in full; anything else is a hidden temp file."""
    for path in run.rglob("*"):
        if path.name.startswith("."):
            assert path.name.endswith(".tmp"), path
        elif path.suffix == ".parquet":
            pl.read_parquet(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())


def live_in_group(pgid: int) -> list[int]:
    """Processes of process group `pgid` still running (zombies excluded)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(stat.parent.name))
    return pids


def resumed(manifest: dict) -> list[str]:
    return [s["name"] for s in manifest["stages"] if s["resumed"]]


def finished_before_target() -> list[str]:
    names = stage_names()
    return [n.rstrip("-") for n in names[: names.index(TARGET)] if n.endswith("-")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, dict[str, bytes]]:
    run = tmp_path_factory.mktemp("uninterrupted")
    manifest = curate(inputs=[str(SAMPLE)], out=str(run), config=CONFIG)
    return manifest, files(run)


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc to prove the killed run left no process")
def test_killed_mid_write_then_rerun_matches_uninterrupted_run(tmp_path, uninterrupted, caplog):
    expected_manifest, expected = uninterrupted
    run, marker = tmp_path / "run", tmp_path / "hanging"
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    log = tmp_path / "crasher.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(script), str(SAMPLE), str(run), TARGET, str(marker), CONFIG.model_dump_json()],
                                cwd=ROOT, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), f"the run never reached {TARGET}:\n{log.read_text()[-3000:]}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the flow and the temporary Prefect server it started
        proc.wait()
    deadline = time.monotonic() + 10
    while live_in_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not live_in_group(proc.pid)

    assert_nothing_half_written(run)
    assert not (run / "manifest.json").exists()
    assert not [p for p in run.rglob(f"{TARGET}*")], "the interrupted output must not exist under its final name"
    assert len([p for p in run.rglob(f".{TARGET}*.tmp")]) == 1  # the half-written bytes, under a hidden temp name

    caplog.set_level(logging.INFO, logger="prefect.task_runs")
    manifest = curate(inputs=[str(SAMPLE)], out=str(run), config=CONFIG)
    assert resumed(manifest) == finished_before_target()
    said = [r.getMessage() for r in caplog.records]
    assert all(any(m.startswith(f"{name}:") and ("resum" in m or "reus" in m) for m in said) for name in resumed(manifest))
    assert manifest["counts"] == expected_manifest["counts"]
    got = {name: data for name, data in files(run).items() if not Path(name).name.startswith(".")}
    assert got == expected
    assert_nothing_half_written(run)


def test_write_failing_once_is_retried_within_the_run(tmp_path, monkeypatch, uninterrupted):
    real, failed = runner_module.write_parquet, []

    def fail_once(frame, path):
        if Path(path).name.startswith(TARGET) and not failed:
            failed.append(path)
            raise OSError(28, "No space left on device")
        return real(frame, path)

    monkeypatch.setattr(runner_module, "write_parquet", fail_once)
    manifest = curate(inputs=[str(SAMPLE)], out=str(tmp_path), config=CONFIG)
    assert failed and manifest["counts"] == uninterrupted[0]["counts"]
    assert files(tmp_path) == uninterrupted[1]


def test_failed_run_resumes_at_the_failed_stage(tmp_path, monkeypatch, uninterrupted):
    real = runner_module.write_parquet

    def always_fail(frame, path):
        if Path(path).name.startswith(TARGET):
            raise OSError(5, "Input/output error")
        return real(frame, path)

    monkeypatch.setattr(runner_module, "write_parquet", always_fail)
    with pytest.raises(OSError):
        curate(inputs=[str(SAMPLE)], out=str(tmp_path), config=CONFIG)
    assert_nothing_half_written(tmp_path)
    monkeypatch.setattr(runner_module, "write_parquet", real)
    manifest = curate(inputs=[str(SAMPLE)], out=str(tmp_path), config=CONFIG)
    assert resumed(manifest) == finished_before_target()
    assert files(tmp_path) == uninterrupted[1]
