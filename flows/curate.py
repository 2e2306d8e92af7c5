"""The `curate` flow: one named Prefect task per stage, passing stage outputs by path.

pipeline.runner owns keys, resume, checks and cleanup; this file only orchestrates.
"""

import os
from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NONE

from flows.artifacts import publish
from pipeline import runner
from pipeline.export import export_run
from pipeline.io import expand_inputs, file_sha256
from pipeline.plan import STAGES
from schemas.config import CurationConfig

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
OPTIONS = dict(retries=1, retry_delay_seconds=1, cache_policy=NONE)


@task(name="ingest-file", **OPTIONS)
def ingest_file(source: dict, cfg: CurationConfig, out: str) -> tuple[str, float]:
    return runner.ingest_part(source["path"], source["sha256"], cfg, out, get_run_logger())


@task(name="ingest", **OPTIONS)
def combine(parts: list[tuple[str, float]], out: str) -> runner.IngestResult:
    return runner.combine_parts(parts, out, get_run_logger())


@task(**OPTIONS)
def stage_task(index: int, previous: runner.StageResult, cfg: CurationConfig, out: str) -> runner.StageResult:
    return runner.run_stage(STAGES[index], previous, cfg, out, runner.with_log(runner.preflight(cfg), get_run_logger()))


@task(name="export", **OPTIONS)
def export(ingested: runner.IngestResult, results: list[runner.StageResult], cfg: CurationConfig, out: str,
           sources: list[dict]) -> dict:
    stages = [asdict(r) | {"path": Path(r.path).name} for r in (ingested.stage, *results)]
    manifest = export_run(results[-1].path, ingested.quarantine, ingested.read, cfg, out, sources, stages, runner.preflight(cfg))
    runner.cleanup(out, [r.key for r in (ingested.stage, *results)] + [k for k, _ in ingested.parts])
    publish(manifest)
    get_run_logger().info("curated %d of %d input records into %s (report: %s)", manifest["counts"]["curated"],
                          manifest["counts"]["input"], out, manifest["outputs"]["report.html"])
    return manifest


@flow(name="curate", log_prints=True)
def curate(inputs: list[str], out: str, config: CurationConfig = CurationConfig()) -> dict:
    """Curate raw instruction files into OUT; returns the manifest (counts, outputs, timings)."""
    runner.preflight(config)
    sources = [{"path": str(f), "sha256": file_sha256(f), "bytes": f.stat().st_size} for f in expand_inputs(inputs)]
    Path(out).mkdir(parents=True, exist_ok=True)
    ingested = combine(ingest_file.map(sources, cfg=unmapped(config), out=unmapped(out)).result(), out)
    results, previous = [], ingested.stage
    for index, stage in enumerate(STAGES):
        previous = stage_task.with_options(name=stage.name)(index, previous, config, out)
        results.append(previous)
    return export(ingested, results, config, out, sources)
