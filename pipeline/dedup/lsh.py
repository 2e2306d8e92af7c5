"""LSH banding and pair verification over MinHash signatures (numpy, no per-pair Python).

Bucket keys are made per row; pairing needs every row's bucket keys (any two records of the run may pair),
verification only the signatures and texts of the paired rows.
"""

import numpy as np
import polars as pl

from pipeline.dedup.minhash import LOW32, shingle_hashes

PAIR_CHUNK = 65_536  # candidate pairs compared per numpy block
EXACT_CHUNK = 8_192  # pairs checked exactly per block: their shingle sets stay a few tens of MB
CLEAR_SIGMAS = 4.0  # estimates this many standard errors from the threshold are trusted without an exact check


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Distinct values in ascending order (np.unique is ~50x slower on uint64 in numpy 2.4)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _band_keys(band: np.ndarray) -> np.ndarray:
    """One 32-bit key per row of a (documents, rows) band; equal bands, equal keys (collisions get verified)."""
    key = np.zeros(len(band), dtype=np.uint64)
    for j in range(band.shape[1]):
        key = (key ^ band[:, j].astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
        key ^= key >> np.uint64(29)
    return key >> np.uint64(32)


def _bucket_pairs(keys: np.ndarray, all_pairs: int) -> np.ndarray:
    """Pairs (lo<<32|hi) of documents sharing a key, lower index = better record.

    Buckets of up to `all_pairs` members pair all-to-all; a larger bucket (a big family of
    near-copies) pairs each member with the bucket's best record and with its neighbour, so
    pairs grow linearly, not with the square of the bucket.
    """
    packed = np.sort(keys << np.uint64(32) | np.arange(len(keys), dtype=np.uint64))
    bucket, doc = packed >> np.uint64(32), packed & LOW32
    first = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    sizes = np.diff(np.append(first, len(doc)))
    size_of, head_of = np.repeat(sizes, sizes), np.repeat(doc[first], sizes)
    found = []
    small = (size_of > 1) & (size_of <= all_pairs)
    members, member_keys = doc[small], bucket[small]
    for step in range(1, min(all_pairs, len(members))):
        hit = np.flatnonzero(member_keys[:-step] == member_keys[step:])
        found.append(members[hit] << np.uint64(32) | members[hit + step])
    large = size_of > all_pairs
    star = large & (doc != head_of)
    found.append(head_of[star] << np.uint64(32) | doc[star])
    members, member_keys = doc[large], bucket[large]
    hit = np.flatnonzero(member_keys[:-1] == member_keys[1:])
    found.append(members[hit] << np.uint64(32) | members[hit + 1])
    return np.concatenate(found)


def bucket_keys(sig: np.ndarray, bands: int) -> np.ndarray:
    """(documents, bands) uint32: the bucket key of each band of each signature, as the pairing reads them."""
    rows = sig.shape[1] // bands
    keys = np.empty((len(sig), bands), dtype=np.uint32)
    for k in range(bands):
        keys[:, k] = _band_keys(sig[:, k * rows:(k + 1) * rows])
    return keys


def candidate_pairs(keys: np.ndarray, all_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) with i < j for pairs of rows with an equal bucket key in at least one band (a column of `keys`)."""
    found = [sorted_unique(_bucket_pairs(keys[:, k].astype(np.uint64), all_pairs)) for k in range(keys.shape[1])]
    packed = sorted_unique(np.concatenate(found)) if found else np.empty(0, dtype=np.uint64)
    return (packed >> np.uint64(32)).astype(np.int64), (packed & LOW32).astype(np.int64)


def estimated_jaccard(sig: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Share of equal signature slots for each pair: the MinHash estimate of their Jaccard similarity."""
    out = np.empty(len(i), dtype=np.float64)
    for lo in range(0, len(i), PAIR_CHUNK):
        sl = slice(lo, lo + PAIR_CHUNK)
        out[sl] = (sig[i[sl]] == sig[j[sl]]).mean(axis=1)
    return out


def _unique_sets(texts: list[str], n: int, unit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted keys doc<<32|hash of each text's distinct shingles, with per-text start and size."""
    counts, hashes = shingle_hashes(texts, n, unit)
    doc = np.repeat(np.arange(len(texts), dtype=np.uint64), counts)
    keys = sorted_unique(doc << np.uint64(32) | hashes.astype(np.uint64))
    sizes = np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=len(texts))
    return keys, np.cumsum(sizes) - sizes, sizes


def exact_jaccard(texts: pl.Series, i: np.ndarray, j: np.ndarray, n: int, unit: str) -> np.ndarray:
    """Exact Jaccard similarity of the shingle-hash sets of each pair (i, j) of texts, in bounded blocks."""
    out = np.empty(len(i), dtype=np.float64)
    for lo in range(0, len(i), EXACT_CHUNK):
        out[lo:lo + EXACT_CHUNK] = _exact_block(texts, i[lo:lo + EXACT_CHUNK], j[lo:lo + EXACT_CHUNK], n, unit)
    return out


def _exact_block(texts: pl.Series, i: np.ndarray, j: np.ndarray, n: int, unit: str) -> np.ndarray:
    """Each element of the smaller set is looked up in the larger one with one vectorised searchsorted."""
    docs = sorted_unique(np.concatenate([i, j]))
    local = np.searchsorted(docs, np.concatenate([i, j]))
    keys, start, size = _unique_sets(texts.gather(docs).to_list(), n, unit)
    a, b = local[:len(i)], local[len(i):]
    small = np.where(size[a] <= size[b], a, b)
    large = np.where(size[a] <= size[b], b, a)
    by_large = np.argsort(large, kind="stable")  # sorted probes make searchsorted cache-friendly
    small, large = small[by_large], large[by_large]
    reps = size[small]
    offset = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    probe = np.repeat(large.astype(np.uint64), reps) << np.uint64(32) | (keys[np.repeat(start[small], reps) + offset] & LOW32)
    at = np.minimum(np.searchsorted(keys, probe), len(keys) - 1)
    inter = np.empty(len(i))
    inter[by_large] = np.bincount(np.repeat(np.arange(len(i)), reps), weights=keys[at] == probe, minlength=len(i))
    union = size[a] + size[b] - inter
    return np.divide(inter, union, out=np.ones(len(i)), where=union > 0)  # two empty texts are equal


def candidates_of_any(keys: list[np.ndarray], all_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j, of pairs that share a bucket on at least one field's bucket keys (`bucket_keys` of each)."""
    found = [candidate_pairs(k, all_pairs) for k in keys]
    packed = sorted_unique(np.concatenate([i.astype(np.uint64) << np.uint64(32) | j.astype(np.uint64) for i, j in found]))
    return (packed >> np.uint64(32)).astype(np.int64), (packed & LOW32).astype(np.int64)


def _field_jaccard(sig: np.ndarray, texts: pl.Series, i: np.ndarray, j: np.ndarray, threshold: float, n: int, unit: str) -> np.ndarray:
    """MinHash estimate of each pair's Jaccard on one field, checked exactly where it is near the threshold.

    Unverified bands chain unrelated records, so no candidate is taken on trust: an estimate
    CLEAR_SIGMAS standard errors away from the threshold decides (wrong about 1 time in 30,000),
    the others are checked exactly on the shingles.
    """
    sim = estimated_jaccard(sig, i, j)
    margin = CLEAR_SIGMAS * np.sqrt(threshold * (1 - threshold) / sig.shape[1])
    unsure = np.flatnonzero((sim >= threshold - margin) & (sim < threshold + margin))
    sim[unsure] = exact_jaccard(texts, i[unsure], j[unsure], n, unit)
    return sim


def verified_pairs(sigs: list[np.ndarray], texts: list[pl.Series], i: np.ndarray, j: np.ndarray, threshold: float, n: int, unit: str):
    """(i, j, lowest jaccard) of the candidate pairs (i, j) whose Jaccard reaches the threshold on every field.

    Candidates come from the bands of any field (a pair edited in one field still meets in the
    other's); each field then prunes the pairs it rejects, so later fields check fewer.
    """
    low = np.ones(len(i))
    for sig, text in zip(sigs, texts):
        sim = _field_jaccard(sig, text, i, j, threshold, n, unit)
        ok = sim >= threshold
        i, j, low = i[ok], j[ok], np.minimum(low[ok], sim[ok])
    return i, j, low
