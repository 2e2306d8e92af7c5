"""Diversity of the curated set beside a random sample of the same size from the same pool.

The pool is every row that reached selection (alive, or dropped by selection itself). The
random sample needs embeddings too: embed `random_baseline(frame, seed)` before calling
`diversity_metrics`. Everything returned is plain JSON for manifest.json.
"""

import math

import numpy as np
import polars as pl

from pipeline.report.runstats import Frame, collect, columns_of, sample_where
from pipeline.stages.embed import matrix


def curated_rows(frame: Frame) -> pl.DataFrame:
    """The curated set: the selected rows, or every alive row when selection did not run."""
    chosen = pl.col("selected").fill_null(False) if "selected" in columns_of(frame) else pl.col("drop_reason").is_null()
    return collect(frame.lazy().filter(chosen))


IN_POOL = pl.col("drop_stage").is_null() | (pl.col("drop_stage") == "select")


def random_baseline(frame: Frame, seed: int, size: int | None = None) -> pl.DataFrame:
    """A seeded uniform sample of the selection pool, as large as the curated set (`size`, when known)."""
    return sample_where(frame, IN_POOL, curated_rows(frame).height if size is None else size, seed, shuffle=True)


def mean_pairwise_distance(vectors: np.ndarray) -> float:
    """Mean cosine distance over all pairs of unit rows, in O(n d): 1 - (|sum|^2 - n) / (n (n - 1))."""
    n = len(vectors)
    if n < 2:
        return 0.0
    total = vectors.astype(np.float64).sum(axis=0)
    return float(1.0 - (total @ total - n) / (n * (n - 1)))


def vendi_score(vectors: np.ndarray) -> float:
    """Vendi score (Friedman & Dieng 2023): exp of the entropy of the eigenvalues of K/n, K = cosine kernel.

    The effective number of distinct items: 1 for n copies of one item, n for n orthogonal items.
    K/n = X X^T / n shares its non-zero eigenvalues with X^T X / n (d x d), which is cheap.
    """
    n = len(vectors)
    if n == 0:
        return 0.0
    x = vectors.astype(np.float64)
    eig = np.clip(np.linalg.eigvalsh(x.T @ x / n), 0.0, None)
    eig = eig[eig > 1e-12]
    eig = eig / eig.sum()
    return float(math.exp(-(eig * np.log(eig)).sum()))


def _counts(rows: pl.DataFrame, column: str) -> dict[str, int]:
    if column not in rows.columns:
        return {}
    found = rows[column].fill_null("unknown").value_counts().sort(["count", column], descending=[True, False])
    return dict(found.iter_rows())


def entropy_bits(counts: dict[str, int]) -> float:
    """Shannon entropy in bits of a count table (0 for one class)."""
    total = sum(counts.values())
    return float(-sum(c / total * math.log2(c / total) for c in counts.values() if c)) if total else 0.0


def _lengths(values: pl.Series) -> dict[str, float]:
    chars = values.fill_null("").str.len_chars().cast(pl.Float64)
    if chars.is_empty():
        return {}
    quantiles = {f"p{int(q * 100)}": float(chars.quantile(q, "nearest")) for q in (0.1, 0.5, 0.9)}
    return {"mean": round(float(chars.mean()), 1), **quantiles}


def describe(rows: pl.DataFrame, embeddings: pl.DataFrame) -> dict:
    """Diversity and composition of one set of rows."""
    vectors = matrix(embeddings, rows["id"])
    categories = _counts(rows, "category")
    return {
        "n": rows.height,
        "mean_pairwise_cosine_distance": round(mean_pairwise_distance(vectors), 4),
        "vendi_score": round(vendi_score(vectors), 2),
        "category_entropy_bits": round(entropy_bits(categories), 4),
        "category_counts": categories,
        "language_counts": _counts(rows, "lang"),
        "prompt_chars": _lengths(rows["instruction"]),
        "response_chars": _lengths(rows["response"]),
    }


def diversity_metrics(frame: Frame, embeddings: pl.DataFrame, seed: int) -> dict:
    """Curated set and a same-size random sample of the pool, side by side (manifest.json)."""
    chosen = curated_rows(frame)
    return {
        "pool_size": int(collect(frame.lazy().select(IN_POOL.sum())).item()),
        "curated": describe(chosen, embeddings),
        "random_sample": describe(random_baseline(frame, seed, chosen.height), embeddings),
        "random_sample_seed": seed,
    }
