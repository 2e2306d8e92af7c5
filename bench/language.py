"""Language detection: langdetect (the default backend) against fastText lid.176, same texts, same run.

The texts are the instruction and response prefixes the language stage reads, from Alpaca 52K
(a sample: langdetect is slow) and MGSM (11 languages). Prints texts/s for each backend, the
ratio, how often the two agree on Alpaca, how often each is right on MGSM (codes as the stage
writes them, compared exactly), and which languages only one backend can name.

    .venv/bin/python bench/language.py [--sample 4000]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.stages.language import canonical, detect_texts, prefix  # noqa: E402
from pipeline.stages.language_detect import _fasttext_model, make_detector  # noqa: E402
from schemas.config import LanguageConfig  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def texts(sample: int) -> tuple[pl.Series, pl.DataFrame]:
    records = json.loads((SHARED / "alpaca" / "alpaca_data.json").read_text(encoding="utf-8"))
    raw = [f"{r['instruction']}\n\n{r['input']}".strip() for r in records] + [r["output"] for r in records]
    alpaca = pl.Series(raw).sample(sample, seed=0)
    mgsm = pl.concat([pl.read_csv(f, separator="\t", has_header=False, quote_char=None, infer_schema=False)
                      .select(pl.lit(f.stem.split("_")[-1]).alias("truth"), pl.nth(0).alias("text"))  # question, answer
                      for f in sorted((SHARED / "multilingual" / "mgsm").glob("mgsm_*.tsv"))])
    return alpaca, mgsm


def label_sets() -> dict[str, set[str]]:
    """Every code each backend can answer, as the stage writes it: langdetect's profiles, fastText's 176 labels."""
    import langdetect

    profiles = sorted(p.name for p in (Path(langdetect.__file__).parent / "profiles").iterdir())
    labels, _ = _fasttext_model().predict("text", k=-1, threshold=-1.0)
    fasttext = [label.removeprefix("__label__") for label in labels]
    return {name: set(canonical(pl.Series(codes, dtype=pl.String))) for name, codes in
            (("langdetect", profiles), ("fasttext", fasttext))}


def run(backend: str, series: pl.Series) -> tuple[pl.Series, float]:
    cfg = LanguageConfig(backend=backend, workers=1)
    detector = make_detector(cfg.backend, cfg.min_probability, cfg.workers)
    start = time.perf_counter()
    found = detect_texts(pl.select(prefix(pl.lit(series), cfg.max_chars)).to_series(), cfg, detector)
    return found, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=4000, help="Alpaca texts (instructions and responses) to detect")
    args = parser.parse_args()
    if not (SHARED / "alpaca" / "alpaca_data.json").is_file():
        sys.exit("../shared/data is needed")
    alpaca, mgsm = texts(args.sample)
    results = {}
    for backend in ("langdetect", "fasttext"):
        found, seconds = run(backend, alpaca)
        judged, _ = run(backend, mgsm["text"])
        right = mgsm.with_columns(lang=judged).group_by("truth").agg(
            (pl.col("lang") == pl.col("truth")).mean().round(3).alias("right")).sort("truth")
        results[backend] = found
        print(f"{backend:<11} {len(alpaca) / seconds:>8,.0f} texts/s on one process; MGSM right: "
              f"{dict(right.iter_rows())}")
    ratio = run("langdetect", alpaca[:500])[1] / run("fasttext", alpaca[:500])[1]
    same = results["langdetect"] == results["fasttext"]
    both = ((results["langdetect"] != "und") & (results["fasttext"] != "und"))
    print(f"fasttext / langdetect speed: {ratio:.0f}x; same answer on {same.mean():.1%} of the Alpaca sample "
          f"({same.filter(both).mean():.1%} where both judge)")
    sets = label_sets()
    print(f"codes: langdetect {len(sets['langdetect'])}, fasttext {len(sets['fasttext'])}; only langdetect: "
          f"{sorted(sets['langdetect'] - sets['fasttext']) or 'none'}; only fasttext: "
          f"{len(sets['fasttext'] - sets['langdetect'])}")


if __name__ == "__main__":
    main()
