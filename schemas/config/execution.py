"""Where the stages run. The output does not depend on it: no stage key reads this section."""

from typing import Literal

from pydantic import Field

from schemas.config.base import Section

INGEST_CHUNK = 10_000


class ExecutionConfig(Section):
    """The engine Prefect fans tasks out to, and the shard size of the per-row stages."""

    runner: Literal["local", "dask", "ray"] = Field(
        "local", description="'local': one process, one task at a time; 'dask': a Dask cluster (prefect-dask's "
        "DaskTaskRunner), joined at `address` or started on this machine; 'ray': a Ray cluster (prefect-ray's "
        "RayTaskRunner), joined at `address` or started locally. Every runner writes the same bytes.")
    address: str | None = Field(None, description="Scheduler address to join (tcp://host:8786 for Dask, ray://host:10001 "
                                "or 'auto' for Ray); None starts a cluster on this machine.")
    workers: int | None = Field(None, ge=1, description="Worker processes of a cluster started here (one thread each); "
                                "None: one per CPU.")
    shard_rows: int = Field(100_000, ge=1, description="Rows per shard of the per-row stages (heuristics, language, "
                            "decontam, pii, category): each shard is a task, so a cluster runs shards side by side. "
                            "Whole-set stages (dedup, embed, ..., select) run once over the joined shards.")
    ingest_chunk: int = Field(INGEST_CHUNK, ge=1, description="Records each input file is read, validated and written "
                              "in at a time: ingesting a file holds about one chunk, whatever the file's size.")
