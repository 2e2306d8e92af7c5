"""The `curate` flow: thin Prefect tasks that pass file paths between pipeline stages.

Each stage writes its output atomically under RUN_DIR/stages/<name>-<key>.parquet, where the key
chains the input files' hashes and each stage's config; a rerun skips every finished stage.
"""

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from flows.artifacts import publish
from pipeline import runinfo
from pipeline.dedup import INDEX_FILE, build_index
from pipeline.diversity import diversity_metrics
from pipeline.export import counts, curated, finalize
from pipeline.ingest import ingest_counted
from pipeline.io import expand_inputs, file_sha256, write_json, write_parquet, write_text
from pipeline.pii import redact
from pipeline.report import write_report
from pipeline.stages import EMBEDDINGS, STEPS, Context, check_side_files, side_path, step_key
from schemas.config import CurationConfig

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@dataclass(frozen=True)
class StageResult:
    name: str
    path: str
    key: str
    seconds: float
    resumed: bool
    alive: int


def _alive(frame: pl.DataFrame) -> int:
    return int(frame["drop_reason"].is_null().sum())


@task(name="ingest", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def ingest_task(inputs: list[dict], cfg: CurationConfig, run_dir: str) -> tuple[StageResult, str, str]:
    """Read and validate every input file; the quarantine and the per-file read counts are written beside the first stage."""
    log = get_run_logger()
    files = [i["path"] for i in inputs]
    key = step_key(str([(i["path"], i["sha256"]) for i in inputs]), "ingest", ("ingest",), cfg, runinfo.code_version())
    out = Path(run_dir, "stages", f"ingest-{key}.parquet")
    qpath = out.with_name(f"quarantine-{key}.parquet")
    rpath = out.with_name(f"read-{key}.parquet")
    if out.exists() and qpath.exists() and rpath.exists():
        log.info("ingest: resumed from %s", out.name)
        return StageResult("ingest", str(out), key, 0.0, True, _alive(pl.read_parquet(out))), str(qpath), str(rpath)
    start = time.perf_counter()
    ledger, quarantine, read = ingest_counted([Path(f) for f in files], cfg.ingest)
    write_parquet(read, rpath)
    write_parquet(quarantine, qpath)
    write_parquet(ledger, out)
    seconds = time.perf_counter() - start
    log.info("ingest: %d records, %d quarantined, from %d files in %.1fs", ledger.height, quarantine.height, len(files), seconds)
    return StageResult("ingest", str(out), key, seconds, False, _alive(ledger)), str(qpath), str(rpath)


@task(name="stage", retries=1, retry_delay_seconds=1, cache_policy=NONE)
def stage_task(index: int, previous: StageResult, cfg: CurationConfig, run_dir: str) -> StageResult:
    """Run one pipeline step on the previous step's output, or reuse its finished output."""
    log = get_run_logger()
    step = STEPS[index]
    key = step_key(previous.key, step.name, step.sections, cfg, runinfo.code_version(), step.files(cfg))
    out = Path(run_dir, "stages", f"{step.name}-{key}.parquet")
    if out.exists():
        log.info("%s: finished in an earlier run, reusing %s", step.name, out.name)
        return StageResult(step.name, str(out), key, 0.0, True, _alive(pl.read_parquet(out)))
    start = time.perf_counter()
    frame = step.run(pl.read_parquet(previous.path), Context(cfg, out, log=log))
    write_parquet(frame, out)
    seconds = time.perf_counter() - start
    result = StageResult(step.name, str(out), key, seconds, False, _alive(frame))
    log.info("%s: %d of %d rows alive after %.1fs", step.name, result.alive, frame.height, seconds)
    return result


@task(name="export", retries=2, retry_delay_seconds=1, cache_policy=NONE)
def export_task(last: StageResult, quarantine_path: str, read_path: str, cfg: CurationConfig, run_dir: str,
                inputs: list[dict], timings: list[StageResult]) -> dict:
    """Write ledger, curated set, quarantine, embeddings, dedup index, report and, last, the manifest.

    The counts are checked against what ingest read before anything is written.
    """
    ledger = finalize(pl.read_parquet(last.path))
    quarantine = pl.read_parquet(quarantine_path)
    read = pl.read_parquet(read_path)
    tally = counts(ledger, quarantine, read)
    run = Path(run_dir)
    chosen = curated(ledger)
    write_parquet(quarantine, run / "quarantine.parquet")
    write_parquet(ledger, run / "ledger.parquet")
    write_parquet(redact(chosen, cfg.pii) if cfg.pii.action == "redact" else chosen, run / "curated.parquet")
    write_parquet(build_index(ledger, cfg.dedup), run / INDEX_FILE)
    names = ["ledger.parquet", "curated.parquet", "quarantine.parquet", INDEX_FILE]
    embeddings = next((pl.read_parquet(side_path(t.path, EMBEDDINGS)) for t in timings if t.name == "select"), None)
    if embeddings is not None:
        write_parquet(embeddings, run / "embeddings.parquet")
        names.append("embeddings.parquet")
    manifest = {
        "winnow_version": runinfo.code_version(),
        "config": cfg.model_dump(mode="json"),
        "inputs": inputs,
        "counts": tally,
        "read": read.to_dicts(),
        "stages": [asdict(t) | {"path": Path(t.path).name} for t in timings],
        "outputs": {name: str(run / name) for name in [*names, "report.html"]},
        "packages": runinfo.packages(),
    }
    if embeddings is not None and cfg.select.budget is not None:
        manifest["diversity"] = diversity_metrics(ledger, embeddings, cfg.select.seed)
    write_text(write_report(run, ledger, quarantine, manifest, embeddings), run / "report.html")
    write_json(manifest, run / "manifest.json")
    publish(manifest)
    get_run_logger().info("curated %d of %d input records into %s (report: %s)", manifest["counts"]["curated"],
                          manifest["counts"]["input"], run, run / "report.html")
    return manifest


@flow(name="curate", log_prints=True)
def curate(inputs: list[str], out: str, config: CurationConfig = CurationConfig()) -> dict:
    """Curate raw instruction files into RUN_DIR; returns the manifest (counts, outputs, timings)."""
    check_side_files(config)
    files = [str(p) for p in expand_inputs(inputs)]
    inputs_info = [{"path": f, "sha256": file_sha256(f), "bytes": Path(f).stat().st_size} for f in files]
    Path(out).mkdir(parents=True, exist_ok=True)
    result, quarantine_path, read_path = ingest_task(inputs_info, config, out)
    timings = [result]
    for index in range(len(STEPS)):
        result = stage_task.with_options(name=STEPS[index].name)(index, result, config, out)
        timings.append(result)
    return export_task(result, quarantine_path, read_path, config, out, inputs_info, timings)
