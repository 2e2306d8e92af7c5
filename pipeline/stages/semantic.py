"""Semantic dedup: prompts that mean the same thing, found by embedding cosine similarity.

Needs the whole embedded set at once (pairs), so it runs after embedding, over the rows that
have embeddings (in a budgeted run, the candidate pool selection examines). Best row first: a
row is a duplicate when a row kept before it is at least `threshold` similar, so of two
duplicates the one with the better quality stays. The pairs come from comparing every pair (a
pool of a few thousand rows) or, in a larger group, from a k-means index (pipeline.dedup.neighbours). An embedding model only judges the languages it
covers (`semantic.languages`; MiniLM is English-only, and on Chinese prompts its cosines are high
for unrelated requests), and a row is compared only with rows of its own language.
"""

import numpy as np
import polars as pl

from pipeline.dedup.neighbours import exact_pairs, index_pairs, resolve
from pipeline.mark import ALIVE, mark
from pipeline.stage import Stage, StageName
from pipeline.stages.embed import matrix
from pipeline.stages.language_detect import UND
from schemas.config.semantic import IndexConfig, SemanticConfig
from schemas.ledger import DropReason

# Adds no column of its own: it fills `dup_of`, which pipeline.stages.dedup owns and documents.
COLUMNS: dict[str, tuple[pl.DataType, str]] = {}


def best_first(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows in keep-preference order: higher quality first, then id (deterministic)."""
    return frame.with_columns(pl.col("quality").fill_null(0.0).alias("_q")).sort(["_q", "id"], descending=[True, False]).drop("_q")


def greedy_duplicates(vectors: np.ndarray, threshold: float, index: IndexConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(index of the kept row each row duplicates or -1, its similarity), rows best first.

    Pairs come from comparing every pair up to `index.exact_max_rows` rows (or always, without an index),
    from the approximate index above it; the greedy over them is the same.
    """
    if index is None or len(vectors) <= index.exact_max_rows:
        return resolve(len(vectors), exact_pairs(vectors, threshold))
    pairs = index_pairs(vectors, threshold, index.cluster_rows, index.probes, index.neighbours, index.seed)
    return resolve(len(vectors), pairs)


def language_group(frame: pl.DataFrame, languages: list[str] | None) -> pl.Expr:
    """The group a row is compared within: its language where the model covers it (`und`, or not detected, counts
    as the first language listed), null where it does not; one group for all when `languages` is None."""
    if languages is None:
        return pl.lit("*")
    lang = pl.col("lang")
    lang = pl.when(lang.is_null() | (lang == UND)).then(pl.lit(languages[0])).otherwise(lang)
    return pl.when(lang.is_in(languages)).then(lang)


def _duplicates(rows: pl.DataFrame, embeddings: pl.DataFrame, cfg: SemanticConfig) -> pl.DataFrame:
    """id, the better row it duplicates (_dup) and their similarity (_sim), for the rows of one group, best first."""
    dup, sim = greedy_duplicates(matrix(embeddings, rows["id"]), cfg.threshold, cfg.index)
    hit = np.flatnonzero(dup >= 0)
    return pl.DataFrame({"id": rows["id"].gather(hit), "_dup": rows["id"].gather(dup[hit]), "_sim": sim[hit]},
                        schema={"id": pl.String, "_dup": pl.String, "_sim": pl.Float32})


def semantic_dedup(frame: pl.DataFrame, embeddings: pl.DataFrame, cfg: SemanticConfig) -> pl.DataFrame:
    """Mark alive embedded rows, in a language the model covers, that mean the same as a better row of that
    language (drop_reason semantic_duplicate)."""
    if cfg.threshold is None:
        return frame
    rows = best_first(frame.filter(ALIVE).join(embeddings.select("id"), on="id", maintain_order="left"))
    groups = rows.with_columns(language_group(rows, cfg.languages).alias("_group")).filter(pl.col("_group").is_not_null())
    parts = groups.partition_by("_group", maintain_order=True)
    if not parts:
        return frame
    found = pl.concat([_duplicates(part, embeddings, cfg) for part in parts])
    out = frame.join(found, on="id", how="left", maintain_order="left")
    detail = pl.format("cosine similarity {} to {} (threshold {})", pl.col("_sim").round(3), pl.col("_dup"), pl.lit(cfg.threshold))
    out = mark(out, pl.col("_dup").is_not_null(), StageName.SEMANTIC, DropReason.SEMANTIC_DUPLICATE, detail)
    is_mine = pl.col("drop_stage").eq(StageName.SEMANTIC).fill_null(False)
    return out.with_columns(
        pl.when(is_mine).then(pl.coalesce("dup_of", "_dup")).otherwise(pl.col("dup_of")).alias("dup_of"),
    ).drop("_dup", "_sim")


def _run(frame: pl.DataFrame, cfg, deps) -> pl.DataFrame:
    return semantic_dedup(frame, frame.filter(pl.col("embedding").is_not_null()).select("id", "embedding").sort("id"), cfg.semantic)


STAGE = Stage(StageName.SEMANTIC, _run, ("semantic",), adds=COLUMNS, per_row=False,
              reads=("embedding", "quality", "lang", "dup_of"))
