"""Heuristics throughput on 1M rows (Alpaca 52K replicated) against a per-row Python baseline.

The baseline applies the same rules the plain way: a loop over rows with `re` and str methods.
It runs on a sample (it is slow) and is measured in the same run, so the ratio holds whatever
else the machine is doing; the load average is printed too. Target: above 50k rows/s.

    python bench/heuristics.py [--rows 1000000] [--baseline-rows 50000]
"""

import argparse
import json
import os
import re
import time
from pathlib import Path

import polars as pl

from pipeline.stages.heuristics import heuristics
from pipeline.stages.heuristics_rules import DANGLING, MIN_VISIBLE
from schemas.config import HeuristicsConfig

ALPACA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca" / "alpaca_data.json"


def alpaca_frame(rows: int) -> pl.DataFrame:
    records = json.loads(ALPACA.read_text(encoding="utf-8"))
    base = pl.DataFrame({
        "instruction": [f"{r['instruction']}\n\n{r['input']}".strip() for r in records],
        "response": [r["output"].strip() for r in records],
    })
    frame = pl.concat([base] * (rows // base.height + 1)).head(rows)
    return frame.with_row_index("id").with_columns(
        pl.col("id").cast(pl.String), *(pl.lit(None, pl.String).alias(c) for c in ("drop_stage", "drop_reason", "drop_detail")))


def baseline_reason(instruction: str, response: str, cfg: HeuristicsConfig, rx: dict) -> str | None:
    """The same rules, one row at a time in plain Python."""
    words = response.split()
    checks = [
        ("empty_response", not response),
        ("short_response", len(response) < cfg.min_response_chars and not re.fullmatch(r"[-+]?\d+(?:[.,]\d+)?%?", response)),
        ("long_instruction", len(instruction) > cfg.max_instruction_chars or len(instruction.split()) > cfg.max_instruction_words),
        ("long_response", len(response) > cfg.max_response_chars or len(words) > cfg.max_response_words),
        ("placeholder", bool(rx["placeholder"].search(instruction) or rx["placeholder"].search(response))),
        ("refusal", bool(rx["refusal"].search(response))),
        ("model_identity", bool(rx["identity"].search(response))),
        ("unsupported_modality", bool(rx["modality"].search(instruction))),
        ("echo", response == instruction or response == instruction.partition("\n\n")[2].strip()),
    ]
    for reason, hit in checks:
        if hit:
            return reason
    n = cfg.repetition_ngram
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)] if len(words) >= cfg.repetition_min_words else []
    lines = [ln.strip() for ln in response.split("\n") if ln.strip()]
    visible = [c for c in response if not c.isspace()]
    if (grams and 1 - len(set(grams)) / len(grams) > cfg.max_repeated_ngram_share) or (
            len(lines) >= 4 and 1 - len(set(lines)) / len(lines) > cfg.max_repeated_line_share):
        return "repetition"
    if len(visible) >= MIN_VISIBLE and sum(c.isalnum() for c in visible) / len(visible) < cfg.min_alnum_share:
        return "low_alpha"
    if response.count("```") % 2 or instruction.count("```") % 2:
        return "unbalanced_code"
    return "truncated" if rx["truncated"].search(response) else None


def compiled(cfg: HeuristicsConfig) -> dict:
    def any_of(patterns):
        return re.compile("(?i)" + "|".join(f"(?:{p})" for p in patterns))
    line = "|".join(f"(?:{p})" for p in cfg.placeholder_patterns)
    ends = r"(?:\S*,|" + "|".join(DANGLING.split()) + ")"
    return {"placeholder": re.compile(rf"(?i)(?:^|\n)[ \t]*(?:{line})[ \t]*(?:\n|$)"),
            "refusal": any_of(cfg.refusal_patterns), "identity": any_of(cfg.identity_patterns),
            "modality": any_of(cfg.modality_patterns),
            "truncated": re.compile(rf"(?:^|\n)[ \t]*(?:\S+[ \t]+){{{cfg.truncated_min_words - 1},}}{ends}\Z")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=50_000)
    args = parser.parse_args()
    cfg = HeuristicsConfig()
    frame = alpaca_frame(args.rows)
    print(f"{frame.height:,} rows ({frame['response'].str.len_bytes().sum() / 1e6:.0f} MB of responses), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    wall, cpu = time.perf_counter(), time.process_time()
    out = heuristics(frame, cfg)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ours = frame.height / wall
    print(f"winnow heuristics : {wall:6.1f} s wall, {cpu:6.1f} s CPU  -> {ours:10,.0f} rows/s  "
          f"(target 50,000: {'met' if ours > 50_000 else 'NOT met'})")

    sample = frame.head(args.baseline_rows)
    rx = compiled(cfg)
    start = time.perf_counter()
    reasons = [baseline_reason(i, r, cfg, rx) for i, r in zip(sample["instruction"], sample["response"])]
    base = sample.height / (time.perf_counter() - start)
    print(f"per-row Python    : {sample.height:,} rows -> {base:10,.0f} rows/s")
    agree = out.head(sample.height)["drop_reason"].eq_missing(pl.Series(reasons, dtype=pl.String)).mean()
    print(f"speed-up {ours / base:.1f}x; same drop reason on {agree:.1%} of the sampled rows")
    print(out.group_by("drop_reason").len().sort("len", descending=True))


if __name__ == "__main__":
    main()
