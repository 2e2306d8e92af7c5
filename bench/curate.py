"""End-to-end benchmark: Alpaca 52K to a 1,000-record curated set, with the default config.

Prints each stage's time, the records per second of the whole run, how many texts were embedded
against the alive rows a naive pipeline would embed, and the curated set's diversity as a ratio
to a random sample of the same size drawn from the same pool in the same run.

    .venv/bin/python bench/curate.py [--data ../shared/data/alpaca/alpaca_data.json] [--budget 1000]
                                     [--language-backend fasttext] [--no-score]

Fresh embedding and score caches are used (WINNOW_CACHE points into the run directory), so encoding and
LM scoring are timed; --no-score times the run with the score stage off (`score.enabled: false`).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_data.json"))
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--language-backend", default="langdetect", choices=["langdetect", "fasttext"])
    parser.add_argument("--score", action=argparse.BooleanOptionalAction, default=True, help="the LM score stage (on by default)")
    args = parser.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"no data at {args.data} (../shared/data is needed)")
    run = Path(tempfile.mkdtemp(prefix="winnow-bench-"))
    os.environ["WINNOW_CACHE"] = str(run / "cache")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    from flows.curate import curate
    from schemas.config import CurationConfig

    start = time.perf_counter()
    manifest = curate(inputs=[args.data], out=str(run / "out"), config=CurationConfig(
        select={"budget": args.budget}, language={"backend": args.language_backend}, score={"enabled": args.score}))
    wall = time.perf_counter() - start
    counts = manifest["counts"]

    print(f"{counts['input']:,} records -> {counts['curated']:,} curated in {wall:.1f}s "
          f"({counts['input'] / wall:,.0f} records/s end to end, flow overhead included)")
    print(f"{'stage':<12}{'seconds':>9}{'alive after':>13}")
    for stage in manifest["stages"]:
        print(f"{stage['name']:<12}{stage['seconds']:>9.1f}{stage['alive']:>13,}")
    import polars as pl

    embedded = pl.read_parquet(run / "out" / "embeddings.parquet").height
    before_select = next(s["alive"] for s in manifest["stages"] if s["name"] == "dedup")
    print(f"embedded {embedded:,} texts of the {before_select:,} alive before selection "
          f"({before_select / embedded:.1f}x fewer than embedding every survivor)")
    div = manifest["diversity"]
    cur, rnd = div["curated"], div["random_sample"]
    print(f"diversity, curated vs random sample of {rnd['n']:,} from a pool of {div['pool_size']:,}:")
    for key in ("vendi_score", "mean_pairwise_cosine_distance", "category_entropy_bits"):
        print(f"  {key:<32}{cur[key]:>9.3f}{rnd[key]:>9.3f}   ratio {cur[key] / rnd[key]:.3f}")
    print(f"  response chars p50 {cur['response_chars']['p50']:.0f} vs {rnd['response_chars']['p50']:.0f}")
    print(f"run directory: {run / 'out'}")


if __name__ == "__main__":
    main()
