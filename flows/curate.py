"""The `curate` flow: one named Prefect task per stage (per shard for the per-row stages), passing
stage outputs by path, on the task runner `execution.runner` names.

pipeline.runner owns keys, resume, checks, shards and cleanup; this file only orchestrates.
"""

from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NONE

from flows.artifacts import publish
from flows.engines import task_runner
from pipeline import runner
from pipeline.export import export_run
from pipeline.io import expand_inputs, file_sha256
from pipeline.plan import STAGES
from schemas.config import CurationConfig

OPTIONS = dict(retries=1, retry_delay_seconds=1, cache_policy=NONE)


@task(name="ingest-file", **OPTIONS)
def ingest_file(source: dict, cfg: CurationConfig, out: str) -> tuple[str, float]:
    return runner.ingest_part(source["path"], source["sha256"], cfg, out, get_run_logger())


@task(name="ingest", **OPTIONS)
def combine(parts: list[tuple[str, float]], out: str) -> runner.IngestResult:
    return runner.combine_parts(parts, out, get_run_logger())


@task(name="shard", **OPTIONS)
def split(previous: runner.StageResult, cfg: CurationConfig, out: str) -> list[runner.StageResult]:
    return runner.split(previous, out, cfg.execution.shard_rows)


@task(**OPTIONS)
def stage_task(index: int, previous: runner.StageResult, cfg: CurationConfig, out: str) -> runner.StageResult:
    return runner.run_stage(STAGES[index], previous, cfg, out, runner.with_log(runner.preflight(cfg), get_run_logger()))


@task(name="join", **OPTIONS)
def join(results: list[runner.StageResult], out: str) -> runner.StageResult:
    return runner.join(results, out)


@task(name="export", **OPTIONS)
def export(ingested: runner.IngestResult, stages: list[runner.StageResult], kept: list[str], cfg: CurationConfig, out: str,
           sources: list[dict]) -> dict:
    listed = [asdict(r) | {"path": Path(r.path).name} for r in (ingested.stage, *stages)]
    manifest = export_run(stages[-1].path, ingested.quarantine, ingested.read, cfg, out, sources, listed, runner.preflight(cfg))
    runner.cleanup(out, kept)
    publish(manifest)
    get_run_logger().info("curated %d of %d input records into %s (report: %s)", manifest["counts"]["curated"],
                          manifest["counts"]["input"], out, manifest["outputs"]["report.html"])
    return manifest


@flow(name="curate-stages", log_prints=True)
def curate_stages(inputs: list[str], out: str, config: CurationConfig) -> dict:
    sources = [{"path": str(f), "sha256": file_sha256(f), "bytes": f.stat().st_size} for f in expand_inputs(inputs)]
    Path(out).mkdir(parents=True, exist_ok=True)
    ingested = combine(ingest_file.map(sources, cfg=unmapped(config), out=unmapped(out)).result(), out)
    previous, stages, kept = ingested.stage, [], [ingested.stage.key, *(k for k, _ in ingested.parts)]
    for group in runner.groups(STAGES):
        chains = [[shard] for shard in split(previous, config, out)] if STAGES[group[0]].per_row else [[previous]]
        for index in group:  # each shard runs the group's stages in order; shards run side by side
            for chain in chains:
                chain.append(stage_task.with_options(name=STAGES[index].name).submit(index, chain[-1], config, out))
        done = [[step.result() for step in chain[1:]] for chain in chains]
        per_stage = [list(shards) for shards in zip(*done)]
        previous = join(per_stage[-1], out) if len(chains) > 1 else per_stage[-1][0]
        stages += [runner.summary(results) for results in per_stage[:-1]] + [previous]
        kept += [previous.key, *(chain[0].key for chain in chains), *(r.key for results in done for r in results)]
    return export(ingested, stages, kept, config, out, sources)


@flow(name="curate", log_prints=True)
def curate(inputs: list[str], out: str, config: CurationConfig = CurationConfig()) -> dict:
    """Curate raw instruction files into OUT; returns the manifest (counts, outputs, timings)."""
    runner.preflight(config)
    return curate_stages.with_options(task_runner=task_runner(config.execution))(inputs, out, config)
