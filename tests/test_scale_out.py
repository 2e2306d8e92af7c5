"""One flow, any engine: per-row stages run shard by shard, in this process, on a real Dask LocalCluster with
worker processes, or on a local Ray cluster, and every run writes the same bytes."""

import importlib.util
from pathlib import Path

import polars as pl
import pytest

from flows.curate import curate
from pipeline import runner
from pipeline.plan import STAGES
from pipeline.stage import StageName
from schemas.config import CurationConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
OUTPUTS = ("ledger.parquet", "curated.parquet", "quarantine.parquet", "embeddings.parquet", "dedup_index.parquet")
# Language on (the per-row stage with its own worker processes), scoring off (one whole-set stage less to wait for).
BASE = {"score": {"enabled": False}, "select": {"budget": 40}}


def run(tmp_path: Path, name: str, **execution) -> dict[str, bytes]:
    out = tmp_path / name
    curate(inputs=[str(SAMPLE)], out=str(out), config=CurationConfig.model_validate(BASE | {"execution": execution}))
    return {f: (out / f).read_bytes() for f in OUTPUTS}


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory) -> dict[str, bytes]:
    return run(tmp_path_factory.mktemp("one"), "run")


def test_per_row_stages_are_grouped_between_the_whole_set_ones():
    names = [[STAGES[i].name for i in group] for group in runner.groups(STAGES)]
    assert names[0] == [StageName.HEURISTICS, StageName.LANGUAGE, StageName.DECONTAM, StageName.PII, StageName.MINHASH]
    assert [StageName.DEDUP] in names and [StageName.CATEGORY] in names and names[-1] == [StageName.SELECT]
    assert all(len(g) == 1 or all(STAGES[i].per_row for i in g) for g in runner.groups(STAGES))


def test_shards_join_back_into_the_same_frame(tmp_path):
    frame = pl.DataFrame({"id": [f"r{k}" for k in range(10)], "drop_reason": pl.Series([None] * 10, dtype=pl.String)})
    (tmp_path / "stages").mkdir()
    whole = tmp_path / "stages" / "pii-00000000000000aa.parquet"
    frame.write_parquet(whole)
    shards = runner.split(runner.StageResult("pii", str(whole), "00000000000000aa", 0.0, False, 10), tmp_path, 4)
    assert [pl.read_parquet(s.path).height for s in shards] == [4, 4, 2] and sum(s.alive for s in shards) == 10
    assert pl.read_parquet(runner.join(shards, tmp_path).path).equals(frame)
    assert runner.split(shards[0], tmp_path, 4) == [shards[0]]  # a shard that fits is passed through


def test_sharded_local_run_writes_the_same_bytes(tmp_path, unsharded):
    assert run(tmp_path, "sharded", shard_rows=90) == unsharded


def test_dask_local_cluster_with_worker_processes_writes_the_same_bytes(tmp_path, unsharded):
    assert run(tmp_path, "dask", runner="dask", workers=2, shard_rows=90) == unsharded


@pytest.mark.skipif(importlib.util.find_spec("prefect_ray") is None, reason="prefect-ray (winnow[ray]) is not installed")
def test_ray_local_cluster_writes_the_same_bytes(tmp_path, unsharded):
    assert run(tmp_path, "ray", runner="ray", workers=2, shard_rows=90) == unsharded
