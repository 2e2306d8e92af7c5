"""The scheduled curate: each run curates the input folder into RUNS_ROOT/<date>, skipping what earlier runs curated.

It is deployed as `curate/scheduled` (prefect.yaml), so it carries the flow name `curate`; the real work is
the `curate` flow, run as a subflow whose parameters show the resolved config (earlier runs included).
"""

from datetime import timezone
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.curate import curate
from pipeline.io import InputError, expand_inputs
from pipeline.stages.dedup import INDEX_FILE
from schemas.config import CurationConfig, load_config


def run_date() -> str:
    """The UTC date this run was scheduled for, so a late or retried run still lands in its own day."""
    return flow_run.scheduled_start_time.astimezone(timezone.utc).strftime("%Y-%m-%d")


def earlier_runs(runs_root: Path, name: str) -> list[str]:
    """Finished runs (manifest and dedup index written) whose names sort before `name`: the days before it.

    Later runs are left out so that rerunning an old day reproduces it.
    """
    done = [p.parent for p in runs_root.glob(f"*/{INDEX_FILE}") if (p.parent / "manifest.json").is_file()]
    return [str(run) for run in sorted(done) if run.name < name]


def with_previous_runs(config: CurationConfig, runs: list[str]) -> CurationConfig:
    """`config` with `runs` added to dedup.previous_runs (those already named come first)."""
    merged = list(dict.fromkeys([*config.dedup.previous_runs, *runs]))
    return CurationConfig.model_validate(config.model_dump() | {"dedup": config.dedup.model_dump() | {"previous_runs": merged}})


@flow(name="curate", log_prints=True)
def curate_scheduled(
    inputs: list[str],
    runs_root: str,
    config: CurationConfig = CurationConfig(),
    config_file: str | None = None,
    run_name: str | None = None,
    dedup_earlier_runs: bool = True,
) -> dict:
    """Curate INPUTS into RUNS_ROOT/<run date>, deduplicated against the earlier runs there; returns the manifest.

    `config_file` (YAML or TOML, read when the run starts) replaces `config`; `run_name` replaces the date.
    An inbox with no readable file is a quiet day: the run logs it and writes nothing.
    """
    log = get_run_logger()
    cfg = load_config(config_file) if config_file else config
    name = run_name or run_date()
    previous = earlier_runs(Path(runs_root), name) if dedup_earlier_runs else []
    out = Path(runs_root) / name
    try:
        expand_inputs(inputs)
    except InputError as err:
        log.warning("nothing to curate today: %s", err)
        return {"skipped": str(err)}
    log.info("curating %s into %s; %d earlier runs to deduplicate against: %s", inputs, out, len(previous), previous)
    return curate(inputs=inputs, out=str(out), config=with_previous_runs(cfg, previous))
