"""Ingest of one large JSON Lines file: peak memory and records/s, streamed in chunks against one chunk (the whole
file held, as ingest read it before it streamed), in the same run.

The file is Alpaca 52K replicated (each copy's instructions numbered, so no two records are alike),
written once under /tmp. Each way runs in its own process, so its peak RSS (VmHWM) is its own:
first the file's part (read, validate, write its rows), then the combined ledger (ids across files).
`--baseline-code DIR` adds a run of another checkout's winnow (say, the commit before streaming).

    python bench/ingest.py [--rows 500000] [--gzip] [--baseline-code /tmp/winnow-main]
"""

import argparse
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALPACA = ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_data.json"
WHOLE = 10**9  # records per chunk: the whole file in one


def make_file(rows: int, compress: bool) -> Path:
    """/tmp/winnow-bench-ingest/alpaca-ROWS.jsonl[.gz], written once."""
    path = Path(tempfile.gettempdir(), "winnow-bench-ingest", f"alpaca-{rows}.jsonl" + (".gz" if compress else ""))
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(ALPACA.read_text(encoding="utf-8"))
    tmp = path.with_suffix(".tmp")
    with (gzip.open(tmp, "wt", encoding="utf-8") if compress else open(tmp, "w", encoding="utf-8")) as f:
        for i in range(rows):
            r = records[i % len(records)]
            f.write(json.dumps({**r, "instruction": f"{r['instruction']} ({i // len(records)})"}, ensure_ascii=False) + "\n")
    tmp.rename(path)
    return path


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the reset) of this process, in MB."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1]) / 1024


def _phase(run) -> dict:
    """Seconds and peak RSS of one call, the peak reset first (it would hold the process's earlier peak)."""
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    result = run()
    return {"seconds": time.perf_counter() - start, "peak_mb": _rss_mb("VmHWM"), "result": result}


def worker(path: str, chunk: int, out: str) -> None:
    """Ingest one file into `out` as the runner does (its part, then the combined first ledger); print the figures."""
    from pipeline import runner
    from pipeline.io import file_sha256
    from schemas.config import CurationConfig

    cfg = CurationConfig(execution={"ingest_chunk": chunk}) if chunk else CurationConfig()
    log = logging.getLogger("bench")
    base = _rss_mb("VmRSS")
    part = _phase(lambda: runner.ingest_part(path, file_sha256(path), cfg, out, log))
    combined = _phase(lambda: runner.combine_parts([part["result"]], out, log).stage.path)
    import polars as pl

    rows = pl.scan_parquet(combined["result"]).select(pl.len()).collect().item()
    print(json.dumps({"loaded_mb": base, "rows": rows, "part": {k: v for k, v in part.items() if k != "result"},
                      "combine": {k: v for k, v in combined.items() if k != "result"}}))


def spawn(path: Path, chunk: int, code: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="winnow-bench-ingest-"))
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", str(path), str(chunk), str(out)], check=True,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(code)})
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--gzip", action="store_true", help="ingest a .jsonl.gz")
    parser.add_argument("--baseline-code", type=Path, help="a checkout whose winnow is also measured")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]), args.worker[2])
    from schemas.config.execution import INGEST_CHUNK

    path = make_file(args.rows, args.gzip)
    print(f"{path.name}: {args.rows:,} records, {path.stat().st_size / 1e6:.0f} MB, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    ways = [(f"streamed ({INGEST_CHUNK:,} a chunk)", INGEST_CHUNK, ROOT), ("one chunk (whole file)", WHOLE, ROOT)]
    if args.baseline_code:
        ways.append((f"code in {args.baseline_code}", 0, args.baseline_code))
    results = {}
    for name, chunk, code in ways:
        r = results[name] = spawn(path, chunk, code)
        part, comb = r["part"], r["combine"]
        print(f"{name:28s}: part {part['seconds']:6.1f} s, {args.rows / part['seconds']:8,.0f} records/s, peak RSS "
              f"{part['peak_mb']:6,.0f} MB | combine {comb['seconds']:5.1f} s, peak RSS {comb['peak_mb']:6,.0f} MB "
              f"(modules loaded: {r['loaded_mb']:.0f} MB; {r['rows']:,} ledger rows)")
    streamed = next(iter(results.values()))
    for name, r in list(results.items())[1:]:
        print(f"against {name}: peak RSS of the part {r['part']['peak_mb'] / streamed['part']['peak_mb']:.1f}x, of combine "
              f"{r['combine']['peak_mb'] / streamed['combine']['peak_mb']:.1f}x; records/s "
              f"{r['part']['seconds'] / streamed['part']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
