"""Text signals for the heuristics stage, vectorised over whole columns (numpy on UTF-8 bytes, polars).

Counting characters by class with regexes costs one match per character; reading the Arrow byte
buffer with numpy, a chunk of rows at a time, is an order of magnitude faster.
"""

import numpy as np
import polars as pl
import pyarrow as pa

_K = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier mixing neighbouring word hashes into one n-gram key


def _utf8_buffer(series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, offsets) of a string column: row i is bytes[offsets[i]:offsets[i + 1]]."""
    arr = series.fill_null("").to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    _, offsets, data = arr.buffers()
    offsets = np.frombuffer(offsets, np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(data, np.uint8)[: offsets[-1]] if data is not None else np.zeros(0, np.uint8)
    return data, offsets


def _per_row(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum a per-byte 0/1 array within each row (one cumulative sum, then differences)."""
    cum = np.cumsum(flags, dtype=np.int32 if len(flags) < 2**31 else np.int64)
    starts, ends = offsets[:-1], offsets[1:]
    if not len(cum):
        return np.zeros(len(starts), np.int64)
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0)
    return np.where(ends > starts, cum[np.maximum(ends - 1, 0)] - before, 0).astype(np.int64)


def _counts(series: pl.Series) -> dict[str, np.ndarray]:
    data, offsets = _utf8_buffer(series)
    space = data <= 0x20
    ascii_alnum = (((data | 0x20) - np.uint8(97)) < 26) | ((data - np.uint8(48)) < 10)
    multi_letter = (data >= 0xC3) & (data != 0xCC) & (data != 0xCD) & (data != 0xE2) & (data < 0xEF)
    cjk = (data >= 0xE3) & (data <= 0xE9)
    word_start = ~space
    word_start[1:] &= space[:-1]
    row_starts = offsets[:-1][offsets[1:] > offsets[:-1]]
    word_start[row_starts] = ~space[row_starts]
    return {
        "visible": _per_row(((data & 0xC0) != 0x80) & ~space, offsets),
        "alnum": _per_row(ascii_alnum | multi_letter, offsets),
        "words": _per_row(word_start | cjk, offsets),
    }


def char_counts(series: pl.Series, chunk_rows: int = 10_000) -> pl.DataFrame:
    """Per row: visible characters, letters+digits, words (whitespace-separated, plus one per CJK character).

    Multi-byte characters are classed by their lead byte: Latin-1 symbols (U+0080-00BF), combining
    marks (U+0300-036F), general punctuation and symbols (U+2000-2FFF), U+F000-FFFF and astral
    characters (emoji) are not letters; every other script's character is.
    """
    parts = [_counts(series.slice(start, chunk_rows)) for start in range(0, series.len(), chunk_rows)]
    return pl.DataFrame({k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, np.int64)
                         for k in ("visible", "alnum", "words")})


def repeated_ngram_share(series: pl.Series, words: pl.Series, n: int, min_words: int) -> pl.Series:
    """Share of each text's word n-grams (case-sensitive) that repeat an earlier n-gram of the same text.

    Only texts with at least `min_words` words (`words`: their counts) are split; the others get 0.
    Words are hashed once; an n-gram key mixes n neighbouring hashes, the row goes in its top 24
    bits, and one sort finds the repeats. Chunks of rows keep the arrays small.
    """
    step = 20_000
    parts = [_ngram_chunk(series.slice(i, step), words.slice(i, step), n, min_words) for i in range(0, series.len(), step)]
    return pl.concat(parts) if parts else pl.Series([], dtype=pl.Float64)


def _ngram_chunk(series: pl.Series, words: pl.Series, n: int, min_words: int) -> pl.Series:
    rows = pl.DataFrame({"row": pl.int_range(series.len(), eager=True, dtype=pl.UInt32), "w": series})
    tokens = (rows.lazy().filter(words >= max(min_words, n))
              .with_columns(pl.col("w").str.replace_all("\n", " ", literal=True).str.split(" "))
              .explode("w").filter(pl.col("w") != "").select("row", pl.col("w").hash()).collect())
    ids, hashes = tokens["row"].to_numpy().astype(np.uint64), tokens["w"].to_numpy()
    span = max(len(ids) - n + 1, 0)
    key = hashes[:span].copy()
    for k in range(1, n):
        key = key * _K ^ hashes[k: k + span]
    valid = ids[:span] == ids[n - 1: n - 1 + span]
    row_of = ids[:span][valid]
    packed = np.sort((row_of << np.uint64(40)) | (key[valid] >> np.uint64(24)))
    repeats = (packed[1:] >> np.uint64(40))[packed[1:] == packed[:-1]]
    total = np.bincount(row_of.astype(np.int64), minlength=series.len())
    repeated = np.bincount(repeats.astype(np.int64), minlength=series.len())
    return pl.Series(repeated / np.maximum(total, 1), dtype=pl.Float64)


def repeated_line_share(series: pl.Series, min_lines: int = 4) -> pl.Series:
    """Share of each text's non-empty lines that repeat an earlier line; 0 below `min_lines` lines."""
    lines = series.str.split("\n").list.eval(pl.element().str.strip_chars()).list.filter(pl.element() != "")
    total = lines.list.len()
    share = 1 - lines.list.n_unique() / total
    return pl.select(pl.when(total >= min_lines).then(share).otherwise(0.0)).to_series().cast(pl.Float64)
