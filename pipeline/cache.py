"""A disk cache of per-text model outputs (embeddings, LM scores), so no text is run through a model twice.

One folder per model key under `$WINNOW_CACHE/<kind>` (default ~/.cache/winnow), holding Parquet
shards of (text_hash, value columns...). Shards are named by their content and written atomically,
so concurrent or interrupted runs can only add complete shards.
"""

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import polars as pl

from pipeline.io import write_parquet


def cache_root(kind: str) -> Path:
    """Where outputs of one kind (embeddings, scores) are cached: $WINNOW_CACHE/<kind> or ~/.cache/winnow/<kind>."""
    return Path(os.environ.get("WINNOW_CACHE", "~/.cache/winnow")).expanduser() / kind


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def read_cache(cache_dir: Path, model: str, hashes: list[str]) -> pl.DataFrame | None:
    """Cached rows of one model for the hashes asked for (first shard wins), or None when it has none."""
    shards = sorted((cache_dir / model).glob("*.parquet"))
    if not shards:
        return None
    wanted = pl.Series(hashes, dtype=pl.String).implode()
    found = pl.scan_parquet(shards).filter(pl.col("text_hash").is_in(wanted)).collect()
    return found.unique("text_hash", keep="first").sort("text_hash")


def write_cache(cache_dir: Path, model: str, rows: pl.DataFrame) -> None:
    """Add a shard of new (text_hash, ...) rows, named by its content, written atomically."""
    if rows.height:
        name = sha("".join(rows["text_hash"].to_list()))[:16]
        write_parquet(rows, cache_dir / model / f"{name}.parquet")


def cached_or_computed(rows: pl.DataFrame, model: str, cache_dir: Path | None,
                       compute: Callable[[pl.DataFrame], pl.DataFrame]) -> list[pl.DataFrame]:
    """The (text_hash, ...) tables for `rows`: what the cache holds, and `compute` of the rest, each text once.

    `compute` gets the missing rows (one per text) and caches what it makes as it goes; empty tables are left out.
    """
    todo = rows.unique("text_hash", keep="first", maintain_order=True)
    found = read_cache(cache_dir, model, todo["text_hash"].to_list()) if cache_dir else None
    if found is not None:
        todo = todo.join(found.select("text_hash"), on="text_hash", how="anti", maintain_order="left")
    return [t for t in (found, compute(todo) if todo.height else None) if t is not None and t.height]
