"""Heuristics: the quality rules instruction data needs, as polars expressions, and the `quality` score.

Rules run in this order and the first that fires names the drop (pipeline.mark): empty or short
response, long instruction or response, placeholder, refusal, model identity, unsupported
modality, echo, repetition, low alpha, unbalanced code, truncated. Each detail quotes its evidence.

quality = L * (0.6 + 0.4 * C) * P, in [0, 1], for every row:
  L = min(1, ln(1 + response_words) / ln(1 + quality_target_words))   substance (LIMA favours full answers)
  C = mean(1 - max(ngram_repeat_share, line_repeat_share),
           min(1, alnum_share / 0.75), min(1, ln(1 + instruction_words) / ln(9)))   clean text, a real instruction
  P = 0.5 where a heuristic rule dropped the row, else 1.
"""

import math

import polars as pl

from pipeline.mark import ALIVE, mark
from pipeline.stage import Stage, StageName
from pipeline.stages.heuristics_rules import rules
from pipeline.stages.heuristics_signals import char_counts, repeated_line_share, repeated_ngram_share
from schemas.config.heuristics import HeuristicsConfig

COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "instruction_chars": (pl.Int64, "characters in the instruction (all user turns)"),
    "instruction_words": (pl.Int64, "words in the instruction (whitespace-separated, one per CJK character)"),
    "response_chars": (pl.Int64, "characters in the response (all assistant turns)"),
    "response_words": (pl.Int64, "words in the response"),
    "alnum_share": (pl.Float64, "share of the response's visible characters that are letters or digits"),
    "ngram_repeat_share": (pl.Float64, "share of the response's word n-grams (case-sensitive) repeating an earlier one"),
    "line_repeat_share": (pl.Float64, "share of the response's non-empty lines repeating an earlier one"),
    "quality": (pl.Float64, "quality score in [0, 1] (formula in pipeline/stages/heuristics.py); dedup keepers and selection use it"),
}


def chars(column: str) -> pl.Expr:
    """Characters in a text column (0 for null)."""
    return pl.col(column).str.len_chars().cast(pl.Int64).fill_null(0)


def signals(frame: pl.DataFrame, cfg: HeuristicsConfig) -> pl.DataFrame:
    """Length, letter-share and repetition columns for every row."""
    ins, res = char_counts(frame["instruction"]), char_counts(frame["response"])
    return frame.with_columns(
        instruction_chars=chars("instruction"),
        instruction_words=ins["words"],
        response_chars=chars("response"),
        response_words=res["words"],
        alnum_share=(res["alnum"] / res["visible"]).fill_nan(1.0),
        ngram_repeat_share=repeated_ngram_share(frame["response"], res["words"], cfg.repetition_ngram, cfg.repetition_min_words),
        line_repeat_share=repeated_line_share(frame["response"]),
        _visible=res["visible"],
    )


def quality(target_words: int) -> pl.Expr:
    """The documented score; rows this stage dropped are halved so they never outrank a clean row."""
    length = ((pl.col("response_words") + 1).log() / math.log(1 + target_words)).clip(upper_bound=1.0)
    clean = pl.mean_horizontal(
        1 - pl.max_horizontal("ngram_repeat_share", "line_repeat_share"),
        (pl.col("alnum_share") / 0.75).clip(upper_bound=1.0),
        ((pl.col("instruction_words") + 1).log() / math.log(9)).clip(upper_bound=1.0),
    )
    penalty = pl.when(pl.col("drop_stage") == StageName.HEURISTICS).then(0.5).otherwise(1.0)
    return (length * (0.6 + 0.4 * clean) * penalty).alias("quality")


def heuristics(frame: pl.DataFrame, cfg: HeuristicsConfig) -> pl.DataFrame:
    """Add the signal columns and `quality`, and mark the first failing rule of each alive row."""
    frame = signals(frame, cfg)
    active = rules(cfg)
    if active:
        chain = pl.when(active[0].hit).then(pl.lit(str(active[0].reason)))
        for rule in active[1:]:
            chain = chain.when(rule.hit).then(pl.lit(str(rule.reason)))
        frame = frame.with_columns(chain.otherwise(None).alias("_reason"))
        hits = frame.with_row_index("_row").filter(ALIVE & pl.col("_reason").is_not_null())
        detail = pl.when(active[0].hit).then(active[0].detail)
        for rule in active[1:]:
            detail = detail.when(rule.hit).then(rule.detail)
        hits = hits.select("_row", detail.alias("_detail"))
        frame = (frame.with_row_index("_row").join(hits, on="_row", how="left", maintain_order="left").drop("_row"))
        frame = mark(frame, pl.col("_reason").is_not_null(), StageName.HEURISTICS, pl.col("_reason"), pl.col("_detail"))
    return frame.with_columns(quality(cfg.quality_target_words)).drop("_reason", "_detail", "_visible", strict=False)


STAGE = Stage(StageName.HEURISTICS, lambda frame, cfg, deps: heuristics(frame, cfg.heuristics), ("heuristics",),
              adds=COLUMNS, per_row=True)
