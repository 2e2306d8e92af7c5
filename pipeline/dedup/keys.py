"""What dedup compares: the folded text of each compared field, its exact-duplicate key, and its LSH bucket keys.

Shared by the per-row MinHash stage (which makes them shard by shard) and the whole-set dedup stage (which makes
the same ones for earlier runs' records and for the candidates it checks).
"""

import hashlib

import numpy as np
import polars as pl

from pipeline.dedup.minhash import signatures
from schemas.config.dedup import DedupConfig

# Runs of anything but letters, marks and digits, except the single spaces between words (matching
# those too makes the replace 3x slower).
NOT_WORD_RUN = r"[^\p{L}\p{M}\p{N} ][^\p{L}\p{M}\p{N}]*| [^\p{L}\p{M}\p{N}]+"


def compared_fields(cfg: DedupConfig) -> list[str]:
    """The fields that must all match for two records to be duplicates (`dedup.fields`)."""
    return ["instruction", "response"] if cfg.fields == "both" else [cfg.fields]


def folded(field: str) -> pl.Expr:
    """One compared field (`joined`: instruction and response as one text), case, punctuation and spacing folded."""
    parts = ["instruction", "response"] if field == "joined" else [field]
    text = pl.concat_str([pl.col(c).fill_null("") for c in parts], separator=" ")
    return text.str.to_lowercase().str.replace_all(NOT_WORD_RUN, " ").str.strip_chars()


def exact_key(keys: pl.DataFrame) -> pl.Series:
    """A 128-bit BLAKE2b of each row's folded keys (columns of `keys`): equal keys, exact duplicates. Folded keys
    hold no newline, so fields cannot run into each other."""
    joined = keys.select(pl.concat_str(keys.columns, separator="\n")).to_series()
    return pl.Series("dedup_key", [hashlib.blake2b(t.encode(), digest_size=16).digest() for t in joined], dtype=pl.Binary)


def signed(texts: pl.Series, cfg: DedupConfig, advance=lambda n: None) -> np.ndarray:
    """MinHash signatures of folded texts with the dedup settings."""
    return signatures(texts, cfg.ngram, cfg.shingle, cfg.num_perm, cfg.seed, cfg.batch_chars, advance)


def bucket_column(keys: list[np.ndarray]) -> pl.Series:
    """Each row's LSH bucket keys (`bucket_keys` of each compared field's signatures), field after field."""
    keys = np.concatenate(keys, axis=1)
    return pl.Series("dedup_buckets", keys, dtype=pl.Array(pl.UInt32, keys.shape[1])).cast(pl.List(pl.UInt32))


def field_buckets(buckets: pl.Series, cfg: DedupConfig) -> list[np.ndarray]:
    """`bucket_column`'s column back as one (rows, bands) array per compared field."""
    fields = compared_fields(cfg)
    keys = buckets.list.to_array(cfg.bands * len(fields)).to_numpy().reshape(len(buckets), len(fields) * cfg.bands)
    return [keys[:, k * cfg.bands:(k + 1) * cfg.bands] for k in range(len(fields))]
