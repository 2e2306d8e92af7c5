"""Semantic dedup's neighbour search: exact search gives what the all-pairs greedy always gave, the k-means
index finds planted near-copies and gives the same bytes on any thread count, and no pair under the
threshold is ever marked."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.dedup.neighbours import exact_pairs, index_pairs
from pipeline.stages.semantic import greedy_duplicates
from schemas.config import ConfigError, SemanticConfig, parse_config

ROOT = Path(__file__).resolve().parents[1]
INDEX = SemanticConfig().index.model_copy(update={"exact_max_rows": 1, "cluster_rows": 100})


def all_pairs_greedy(vectors: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The greedy as it was before the neighbour search (kept as the oracle): each block of rows against
    every row before it by one product, resolved row by row."""
    n = len(vectors)
    dup, sim, kept = np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.float32), np.zeros(n, dtype=bool)
    for start in range(0, n, 1024):
        stop = min(start + 1024, n)
        sims = vectors[start:stop] @ vectors[:stop].T
        for i in range(stop - start):
            row = sims[i, :start + i] * kept[:start + i] - (~kept[:start + i])
            j = int(row.argmax()) if start + i else -1
            if j >= 0 and row[j] >= threshold:
                dup[start + i], sim[start + i] = j, row[j]
            else:
                kept[start + i] = True
    return dup, sim


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def jitter(rows: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at about `cosine` to `rows`."""
    return unit(rows + rng.standard_normal(rows.shape) * np.tan(np.arccos(cosine)) / np.sqrt(rows.shape[1]))


def topics(n: int, dim: int, copies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows around 20 topics (cosine ~0.5 to theirs), `copies` of them near-copies (~0.95) of another row;
    and the (copy, original) row numbers."""
    rng = np.random.default_rng(seed)
    rows = jitter(unit(rng.standard_normal((20, dim)))[rng.integers(0, 20, n)], 0.5, rng)
    order = rng.permutation(n)
    planted = np.stack([order[:copies], order[copies:][rng.integers(0, n - copies, copies)]], axis=1)
    rows[planted[:, 0]] = jitter(rows[planted[:, 1]], 0.95, rng)
    return rows, planted


@pytest.mark.parametrize(("n", "dim", "threshold", "seed"), [(1, 4, 0.9, 0), (300, 8, 0.9, 1), (2500, 16, 0.95, 2), (3000, 384, 0.9, 3)])
def test_exact_search_equals_the_all_pairs_greedy(n, dim, threshold, seed):
    rows, _ = topics(n, dim, n // 4, seed)
    rows[1::7] = rows[::7][:len(rows[1::7])]  # exact copies: equal similarities, the earliest kept row wins
    dup, sim = greedy_duplicates(rows, threshold, SemanticConfig().index)
    want_dup, want_sim = all_pairs_greedy(rows, threshold)
    assert (want_dup >= 0).sum() > n // 10 or n == 1
    assert np.array_equal(dup, want_dup) and sim.tobytes() == want_sim.tobytes()


def test_index_finds_the_planted_copies_and_the_pairs_exact_search_finds():
    rows, planted = topics(6000, 384, 600, 4)
    (later, earlier, sims), = index_pairs(rows, 0.9, INDEX.cluster_rows, INDEX.probes, INDEX.neighbours, INDEX.seed)
    exact = np.concatenate([c[0] << 32 | c[1] for c in exact_pairs(rows, 0.9)])
    recall = np.isin(exact, later << 32 | earlier).mean()
    dup, _ = greedy_duplicates(rows, 0.9, INDEX)
    assert len(exact) > 500 and recall >= 0.99, recall
    assert np.mean((dup[planted] >= 0).any(axis=1)) >= 0.99
    (_, _, one_probe), = index_pairs(rows, 0.9, INDEX.cluster_rows, 1, INDEX.neighbours, INDEX.seed)
    assert len(one_probe) < 0.99 * len(exact), "a row's own cluster alone misses pairs: probes matter here"


def test_no_pair_under_the_threshold_is_marked_and_every_row_points_at_an_earlier_kept_row():
    rows = unit(np.random.default_rng(5).standard_normal((4000, 6)))  # 6-d: many pairs either side of 0.97
    for index in (None, INDEX):
        dup, sim = greedy_duplicates(rows, 0.97, index)
        marked = np.flatnonzero(dup >= 0)
        assert len(marked) > 500 and (sim[marked] >= np.float32(0.97)).all()
        assert np.allclose(np.einsum("ij,ij->i", rows[marked], rows[dup[marked]]), sim[marked], atol=1e-6)
        assert (dup[marked] < marked).all() and (dup[dup[marked]] == -1).all()
    (later, earlier, sims), = index_pairs(rows, 0.97, 100, 4, 64, 0)
    assert (sims >= np.float32(0.97)).all() and (earlier < later).all()


def test_a_family_of_near_copies_collapses_to_its_best_row_however_few_neighbours_are_kept():
    rng = np.random.default_rng(6)
    rows = np.concatenate([jitter(np.ones((500, 64)), 0.99, rng), unit(rng.standard_normal((1500, 64)))])[rng.permutation(2000)]
    family = np.flatnonzero(rows.sum(axis=1) > 5)
    dup, _ = greedy_duplicates(rows, 0.9, INDEX.model_copy(update={"neighbours": 4}))
    assert len(family) == 500 and (dup[family[1:]] == family[0]).all() and dup[family[0]] == -1


DIGEST = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_semantic_index import INDEX, topics
from pipeline.dedup.neighbours import index_pairs, resolve
rows, _ = topics(6000, 384, 600, 4)
pairs = list(index_pairs(rows, 0.9, INDEX.cluster_rows, INDEX.probes, INDEX.neighbours, INDEX.seed))
print(hashlib.sha256(b"".join(a.tobytes() for a in (*pairs[0], *resolve(len(rows), pairs)))).hexdigest())
"""


def test_index_gives_the_same_bytes_on_one_and_two_threads_and_run_after_run():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    digests = {subprocess.run([sys.executable, "-c", DIGEST.format(tests=str(ROOT / "tests"))], capture_output=True, text=True, check=True,
                              env={**env, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}).stdout for threads in ("1", "2", "2")}
    assert len(digests) == 1


def test_index_config_is_validated_and_can_be_turned_off():
    assert parse_config({"semantic": {"index": None}}).semantic.index is None
    assert SemanticConfig().index.exact_max_rows >= 10_000, "a budgeted run's pool (a few thousand rows) is searched exactly"
    with pytest.raises(ConfigError, match=r"^invalid config: semantic\.index\.probes: "):
        parse_config({"semantic": {"index": {"probes": 0}}})
    with pytest.raises(ConfigError, match=r"^invalid config: semantic\.index\.clusters: "):
        parse_config({"semantic": {"index": {"clusters": 10}}})
