"""Text normalisation and the stable record id."""

import hashlib
import re
import unicodedata

import polars as pl

_TRAILING_WS = re.compile(r"[ \t]+\n")


def normalize_text(text: str) -> str:
    """NFC, Unix newlines, no trailing spaces on lines, no outer whitespace: same meaning, one spelling."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return _TRAILING_WS.sub("\n", text).strip()


def content_hash(messages: list[dict]) -> str:
    """sha256 (first 32 hex) of the normalised conversation: the same conversation, the same hash."""
    payload = "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in messages)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def copy_numbers(hashes: pl.Series) -> pl.Series:
    """How many earlier rows hold each row's content hash, in input order: the one whole-set view ids need."""
    return hashes.to_frame("content_hash").select(pl.int_range(pl.len()).over("content_hash").alias("copy"))["copy"]


def with_ids(frame: pl.DataFrame, copies: pl.Series) -> pl.DataFrame:
    """id = content hash; later exact copies (`copy_numbers`, for these rows) get '-1', '-2'... in input order,
    so ids stay unique and stable."""
    nth = pl.lit(copies)
    return frame.with_columns(
        pl.when(nth == 0).then(pl.col("content_hash")).otherwise(pl.col("content_hash") + "-" + nth.cast(pl.String)).alias("id")
    )
