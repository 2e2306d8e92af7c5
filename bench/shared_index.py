"""Shared dedup index benchmark: a second run deduped against a first through Redis vs through Parquet.

    python bench/shared_index.py                # Alpaca 52K; starts a throwaway redis-server on a free port
    python bench/shared_index.py --port 6379    # against a running server (writes under the name 'bench')

Run 1 is Alpaca's first 50K rows, deduped and indexed: written as dedup_index.parquet, and inserted into
the shared index. Run 2 is deduped against it twice, with `previous_runs`' frame and with the shared index,
and the two ledgers must be equal: once with the last 50K rows (48K of them run 1's), once with Alpaca 5000
(records run 1 holds) and the 2K rows run 1 did not read.
"""

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.dedup.keys import folded, signed  # noqa: E402
from pipeline.mark import ALIVE  # noqa: E402
from pipeline.stages.dedup import INDEX_FILE, build_index, dedup, load_previous, open_shared_index  # noqa: E402
from pipeline.stages.ingest import ingest  # noqa: E402
from schemas.config import DedupConfig, IngestConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "alpaca"
LEDGER = ["id", "drop_reason", "drop_detail", "dup_of", "dedup_cluster", "dup_similarity"]


def timed(what: str, fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    print(f"  {what}: {time.perf_counter() - start:.2f}s")
    return out


def server(folder: str) -> tuple[subprocess.Popen, int]:
    """A redis-server without persistence on a free port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", folder], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, help="a running redis-server's port (default: start one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = (None, args.port) if args.port else server(tmp)
        try:
            run(Path(tmp), port)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait()


def run(tmp: Path, port: int) -> None:
    cfg = DedupConfig(shared_index={"port": port, "name": "bench"})
    plain = cfg.model_copy(update={"shared_index": None})
    alpaca, _ = ingest([DATA / "alpaca_data.json"], IngestConfig())
    both, _ = ingest([DATA / "alpaca_5000.json", DATA / "alpaca_data.json"], IngestConfig())  # one run: ids unique
    first = alpaca.head(50_000)
    print(f"run 1: {first.height:,} rows")
    index = build_index(timed("dedup (no earlier run)", dedup, first, plain), plain)
    print(f"  {index.height:,} curated")
    (tmp / "run1").mkdir()
    timed("Parquet: write dedup_index.parquet", index.write_parquet, tmp / "run1" / INDEX_FILE)
    print(f"  Parquet index: {(tmp / 'run1' / INDEX_FILE).stat().st_size / 2**20:.1f} MiB")
    shared = open_shared_index(cfg)
    print("  shared:", timed("Redis: insert", shared.insert, index, "run1"))
    print("  again: ", timed("Redis: insert again (all present)", shared.insert, index, "run1"))
    print(f"  Redis used_memory: {shared.client.info('memory')['used_memory'] / 2**20:.1f} MiB")
    second_runs = {"last 50K rows (48K in run 1)": alpaca.tail(50_000),
                   "Alpaca 5000 + the 2K rows run 1 did not read": both.filter(
                       pl.col("source").str.ends_with("alpaca_5000.json") | (pl.col("source_index") >= 50_000))}
    for name, second in second_runs.items():
        print(f"run 2, {name}: {second.height:,} rows")
        by_parquet = timed("Parquet: load_previous + dedup", lambda: dedup(second, plain, load_previous([str(tmp / "run1")])))
        by_redis = timed("Redis: dedup with the shared index", dedup, second, cfg, None, shared, "run2")
        sigs = {"joined": signed(second.filter(ALIVE).select(folded("joined")).to_series(), cfg)}
        ids = timed("  of which the bucket lookup", shared.bucket_members, sigs)
        fetched = timed("  of which lookup + fetching the rows", shared.candidates, sigs, "run2")
        print(f"  {len(ids):,} indexed records share a band, {fetched.height:,} rows fetched; "
              f"{by_redis.filter(pl.col('drop_reason') == 'seen_in_earlier_run').height:,} seen_in_earlier_run")
        assert by_redis.select(LEDGER).equals(by_parquet.select(LEDGER)), "the ledgers differ"
        print("  ledgers equal")


if __name__ == "__main__":
    main()
