"""Shingles, signatures, banding, verification and clustering: datasketch equality and the logic."""

import json
import random

import numpy as np
import polars as pl
import pytest
from datasketch import MinHash

from pipeline.dedup.cluster import components, greedy_keepers
from pipeline.dedup.lsh import bucket_keys, candidate_pairs, candidates_of_any, exact_jaccard, verified_pairs
from pipeline.dedup.minhash import permutations, shingle_hash, shingle_hashes, shingles, signatures

ODD_TEXTS = ["", "a", "ab", "abcd", "abcde", "héllo wörld 你好世界 emoji 😀 ok", "one two", "x" * 3000,
             "the cat sat on the mat and the cat sat again", "  double  spaces  "]


def _datasketch(text: str, n: int, unit: str, num_perm: int, seed: int) -> np.ndarray:
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=shingle_hash)
    for s in shingles(text, n, unit):
        m.update(s.encode("utf-8"))
    return m.hashvalues


@pytest.mark.parametrize(("unit", "n", "num_perm", "seed"), [("char", 5, 128, 1), ("char", 3, 64, 7), ("char", 1, 16, 0),
                                                            ("word", 1, 32, 1), ("word", 3, 128, 42)])
def test_signatures_are_bit_identical_to_datasketch(unit, n, num_perm, seed):
    texts = ODD_TEXTS + [" ".join(random.Random(k).choices(["lorem", "ipsum", "dolor", "sit", "amet", "ñu"], k=k)) for k in range(40)]
    ours = signatures(pl.Series(texts), n, unit, num_perm, seed, batch_chars=4096)
    for text, row in zip(texts, ours):
        assert np.array_equal(row, _datasketch(text, n, unit, num_perm, seed)), text[:40]


def test_signatures_match_datasketch_on_real_alpaca(shared_data):
    records = json.loads((shared_data / "alpaca" / "alpaca_data.json").read_text())[:300]
    texts = [f"{r['instruction']} {r['input']} {r['output']}".lower() for r in records]
    ours = signatures(pl.Series(texts), 5, "char", 128, 1)
    assert all(np.array_equal(row, _datasketch(t, 5, "char", 128, 1)) for t, row in zip(texts, ours))


def test_permutations_are_datasketchs():
    a, b = permutations(64, 3)
    theirs = MinHash(num_perm=64, seed=3).permutations
    assert np.array_equal(a, theirs[0]) and np.array_equal(b, theirs[1])


def test_vectorised_shingle_hashes_equal_the_scalar_hash():
    for unit, n in [("char", 5), ("char", 2), ("word", 2)]:
        counts, hashes = shingle_hashes(ODD_TEXTS, n, unit)
        assert hashes.tolist() == [shingle_hash(s) for t in ODD_TEXTS for s in shingles(t, n, unit)]
        assert counts.tolist() == [len(shingles(t, n, unit)) for t in ODD_TEXTS]


def test_batching_does_not_change_signatures():
    texts = pl.Series([f"record {k} " * (k % 7 + 1) for k in range(500)] + ODD_TEXTS)
    assert np.array_equal(signatures(texts, 5, "char", 32, 1, batch_chars=1 << 12), signatures(texts, 5, "char", 32, 1, batch_chars=1 << 22))


def test_shingle_hash_has_no_collisions_on_real_text(shared_data):
    records = json.loads((shared_data / "alpaca" / "alpaca_data.json").read_text())[:3000]
    distinct = {s for r in records for s in shingles(r["output"].lower(), 5)}
    _, hashes = shingle_hashes(sorted(distinct), 5)
    assert len(distinct) > 100_000
    assert len(set(hashes.tolist())) >= len(distinct) - 2  # 32-bit: a collision or two is chance, more is a bug


def test_candidate_pairs_come_from_shared_bands():
    sig = np.arange(5 * 8, dtype=np.uint32).reshape(5, 8)
    sig[3, :4] = sig[1, :4]  # rows 1 and 3 share band 0
    sig[4] = sig[2]  # rows 2 and 4 share every band
    i, j = candidate_pairs(bucket_keys(sig, bands=2), all_pairs=16)
    assert sorted(zip(i.tolist(), j.tolist())) == [(1, 3), (2, 4)]


def test_large_buckets_pair_members_with_the_best_record():
    sig = np.zeros((40, 4), dtype=np.uint32)  # one bucket of 40
    i, j = candidate_pairs(bucket_keys(sig, bands=1), all_pairs=8)
    pairs = set(zip(i.tolist(), j.tolist()))
    assert {(0, k) for k in range(1, 40)} <= pairs and len(pairs) < 40 * 39 / 2 / 4


def test_exact_jaccard_is_exact():
    texts = pl.Series(["abcdefgh", "abcdefgx", "zzzzzzzz", "", "abcdefgh", ""])
    i, j = np.array([0, 0, 0, 0, 3]), np.array([1, 2, 3, 4, 5])
    a, b = set(shingles("abcdefgh", 5)), set(shingles("abcdefgx", 5))
    assert exact_jaccard(texts, i, j, 5, "char").tolist() == [len(a & b) / len(a | b), 0.0, 0.0, 1.0, 1.0]  # two empty texts are equal


def test_estimates_near_the_threshold_are_checked_on_the_text():
    texts = pl.Series(["the quick brown fox jumps over the lazy dog", "completely different words here entirely"])
    sig = np.zeros((2, 128), dtype=np.uint32)
    sig[1, :50] = 1  # forged estimate 0.61: within 4 standard errors of 0.5, so checked exactly (J = 0)
    one_pair = np.array([0]), np.array([1])
    assert len(verified_pairs([sig], [texts], *one_pair, 0.5, 5, "char")[0]) == 0
    i, _, sim = verified_pairs([np.zeros((2, 128), dtype=np.uint32)], [texts], *one_pair, 0.5, 5, "char")
    assert len(i) == 1 and sim[0] == 1.0  # a clear estimate decides on its own (wrong ~1 in 30,000)


def test_every_field_must_pass_and_the_lower_similarity_is_kept():
    """Field 0 agrees everywhere; field 1 (forged estimate 0.75, clear of 0.5) only for pair (0, 1)."""
    texts = pl.Series(["a", "b", "c"])
    same = np.zeros((3, 128), dtype=np.uint32)
    second = np.zeros((3, 128), dtype=np.uint32)
    second[1, :32] = 1
    second[2, :] = np.arange(128) + 7  # no band shared, no slot equal: J estimate 0
    candidates = candidates_of_any([bucket_keys(same, 32), bucket_keys(second, 32)], all_pairs=16)
    i, j, sim = verified_pairs([same, second], [texts, texts], *candidates, 0.5, 5, "char")
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1)] and sim.tolist() == [0.75]


def test_components_and_greedy_keepers():
    i, j = np.array([0, 1, 3]), np.array([1, 2, 4])
    assert components(6, i, j).tolist() == [0, 0, 0, 3, 3, 5]
    # chain 0~1~2 with 0 !~ 2: 1 goes to 0, and 2 stays because its only match was dropped
    assert greedy_keepers(6, i, j).tolist() == [-1, 0, -1, -1, 3, -1]
    assert greedy_keepers(4, np.array([0, 0, 1]), np.array([2, 3, 3])).tolist() == [-1, -1, 0, 0]
