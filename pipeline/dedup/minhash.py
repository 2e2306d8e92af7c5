"""Shingles and MinHash signatures at numpy speed, bit-identical to datasketch's default scheme.

A shingle is a substring of the (already normalised) text: n characters, or n space-separated
words. All shingles of a batch are hashed at once with a polynomial hash over codepoints taken
from prefix sums, so no Python runs per shingle; `shingle_hash` is the same hash for one shingle.
Signatures follow datasketch >= 2.0 "affine32": a*fmix32(h)+b mod 2**32, minimum per document,
so `datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash)` fed the same shingles agrees.
"""

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

MULT = np.uint64(0x9E3779B97F4A7C15)  # odd, hence invertible mod 2**64
MULT_INV = np.uint64(pow(int(MULT), -1, 1 << 64))
LOW32 = np.uint64(0xFFFFFFFF)
EMPTY = np.uint32(0xFFFFFFFF)  # datasketch's value for a permutation that saw no shingle
MAX_THREADS = 8  # signature batches run on up to this many cores at once (and no more than polars uses)
CHUNK = 8192  # shingles per permutation block: (num_perm, CHUNK) uint32 stays in cache


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, which datasketch applies before its affine permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _fold(h: np.ndarray) -> np.ndarray:
    """64-bit polynomial hash -> 32 bits (both halves kept; datasketch's fmix32 spreads them later)."""
    return (h ^ (h >> np.uint64(32))).astype(np.uint32)


def shingle_hash(shingle: str | bytes) -> int:
    """32-bit hash of one shingle: the scalar twin of `shingle_hashes`, usable as datasketch's hashfunc."""
    text = shingle.decode("utf-8") if isinstance(shingle, bytes) else shingle
    h = 0
    for ch in text:
        h = (h * int(MULT) + ord(ch)) & 0xFFFFFFFFFFFFFFFF
    return (h ^ (h >> 32)) & 0xFFFFFFFF


def shingles(text: str, n: int, unit: str = "char") -> list[str]:
    """The shingles of one text, in order: n chars, or the span of n space-separated words (a reference)."""
    if not text:
        return []
    if unit == "char":
        return [text[i:i + n] for i in range(max(len(text) - n + 1, 1))]
    words = [m.span() for m in re.finditer(r"[^ ]+", text)]
    if not words:
        return []
    return [text[words[i][0]:words[min(i + n, len(words)) - 1][1]] for i in range(max(len(words) - n + 1, 1))]


def _char_hashes(code: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-document counts and hashes of every char n-gram: Horner over shifted slices, no gathers."""
    counts = np.where(lengths > 0, np.maximum(lengths - n + 1, 1), 0)
    padded = np.concatenate([code, np.zeros(n - 1, dtype=np.uint64)])
    h = padded[:len(code)].copy()
    for k in range(1, n):
        h *= MULT
        h += padded[k:k + len(code)]
    starts = np.cumsum(lengths) - lengths
    edge = np.zeros(len(code) + 1, dtype=np.int32)
    np.add.at(edge, starts[counts > 0], 1)
    np.add.at(edge, (starts + counts)[counts > 0], -1)
    hashes = _fold(h[np.cumsum(edge[:-1]) > 0])
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    if len(short):
        hashes[(np.cumsum(counts) - counts)[short]] = _fold(_span_hashes(code, starts[short], starts[short] + lengths[short]))
    return counts, hashes


def _span_hashes(code: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """64-bit polynomial hash of code[left:right] for many spans at once, from prefix sums."""
    powers = np.ones(len(code) + 1, dtype=np.uint64)
    inverse = np.ones(len(code) + 1, dtype=np.uint64)
    np.cumprod(np.full(len(code), MULT), out=powers[1:])
    np.cumprod(np.full(len(code), MULT_INV), out=inverse[1:])
    prefix = np.zeros(len(code) + 1, dtype=np.uint64)
    np.cumsum(code * inverse[:-1], out=prefix[1:])
    return (prefix[right] - prefix[left]) * powers[right - 1]


def _word_spans(code: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-document shingle counts and [left, right) codepoint spans of every run of n words."""
    ends = np.cumsum(lengths)
    starts = ends - lengths
    word = code != 32
    boundary_before = np.ones(len(code), dtype=bool)
    boundary_before[1:] = code[:-1] == 32
    boundary_before[starts[lengths > 0]] = True
    boundary_after = np.ones(len(code), dtype=bool)
    boundary_after[:-1] = code[1:] == 32
    boundary_after[ends[lengths > 0] - 1] = True
    word_left = np.flatnonzero(word & boundary_before)
    word_right = np.flatnonzero(word & boundary_after) + 1
    per_doc = np.diff(np.searchsorted(word_left, np.concatenate(([0], ends))))
    counts = np.where(per_doc > 0, np.maximum(per_doc - n + 1, 1), 0)
    first_word = np.cumsum(per_doc) - per_doc
    k = np.arange(counts.sum(), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    lw = np.repeat(first_word, counts) + k
    rw = np.minimum(lw + n - 1, np.repeat(first_word + per_doc - 1, counts))
    return counts, word_left[lw], word_right[rw]


def shingle_hashes(texts: list[str], n: int, unit: str = "char") -> tuple[np.ndarray, np.ndarray]:
    """(shingle count per text, uint32 hash of every shingle in text order) for a batch of texts.

    A text shorter than one shingle is one shingle; an empty text has none.
    """
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    code = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if unit == "char":
        return _char_hashes(code, lengths, n)
    counts, left, right = _word_spans(code, lengths, n)
    return counts, _fold(_span_hashes(code, left, right))


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b) for this seed."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def signatures_of(counts: np.ndarray, hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(documents, num_perm) uint32 MinHash signatures from per-document shingle hashes."""
    sig = np.full((len(a), len(counts)), EMPTY, dtype=np.uint32)
    doc_start = np.cumsum(counts) - counts
    mixed = _fmix32(hashes)
    block = np.empty((len(a), CHUNK), dtype=np.uint32)
    for lo in range(0, len(mixed), CHUNK):
        h = mixed[lo:lo + CHUNK]
        out = block[:, :len(h)]
        np.multiply(a[:, None], h[None, :], out=out)
        np.add(out, b[:, None], out=out)
        first = np.searchsorted(doc_start, lo, "right") - 1
        last = np.searchsorted(doc_start, lo + len(h))
        cuts = np.maximum(doc_start[first:last] - lo, 0)
        np.minimum(sig[:, first:last], np.minimum.reduceat(out, cuts, axis=1), out=sig[:, first:last])
    sig[:, counts == 0] = EMPTY  # reduceat gave empty documents a neighbour's value
    return np.ascontiguousarray(sig.T)


def text_batches(texts: pl.Series, chars: int) -> list[slice]:
    """Consecutive slices of about `chars` codepoints each (small arrays are reused, not page-faulted)."""
    ends = texts.str.len_chars().fill_null(0).cum_sum().to_numpy()
    if len(ends) == 0:
        return []
    cuts = np.unique(np.searchsorted(ends, np.arange(chars, ends[-1] + chars, chars), "left")) + 1
    starts = np.concatenate(([0], cuts[:-1]))
    return [slice(lo, min(hi, len(texts))) for lo, hi in zip(starts, cuts) if lo < len(texts)]


def signatures(texts: pl.Series, n: int, unit: str, num_perm: int, seed: int, batch_chars: int = 1 << 18,
               advance: Callable[[int], None] = lambda n: None) -> np.ndarray:
    """MinHash signatures of many texts, about `batch_chars` codepoints per batch, batches side by side.

    numpy releases the GIL in its loops, so threads scale; each batch writes only its own rows. As many threads as
    polars' pool (POLARS_MAX_THREADS), so a worker pinned to one thread signs on one.
    `advance(k)` is called as each batch of k texts is signed.
    """
    a, b = permutations(num_perm, seed)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)

    def sign(part: slice) -> int:
        counts, hashes = shingle_hashes(texts[part].to_list(), n, unit)
        out[part] = signatures_of(counts, hashes, a, b)
        return len(counts)

    with ThreadPoolExecutor(min(MAX_THREADS, pl.thread_pool_size())) as pool:
        for signed in pool.map(sign, text_batches(texts, batch_chars)):
            advance(signed)
    return out
