"""Pairs of unit vectors at least `threshold` similar, and the best-first greedy over them.

Rows come best first; a pair is (later row, earlier row, similarity). Exact search compares every
pair (blocked products, O(n^2)); the index compares a row only with the rows of the k-means clusters
nearest it (an IVF search, as faiss's IndexIVFFlat or SemDeDup's cluster-then-compare), so its cost
is n x probes x cluster size. Numpy only, and deterministic: the k-means is seeded and every step
is a product, sort or reduction whose shapes follow from the input alone (OpenBLAS's products are
the same on any thread count; its kernels for another kind of CPU may differ in the last bit).
"""

from collections.abc import Iterable, Iterator

import numpy as np

BLOCK = 1024  # later rows per exact block: memory BLOCK x n
TILE = 1 << 24  # similarities the index holds at once (64 MB)
TRAIN_PER_CLUSTER = 64  # k-means sample rows per cluster (faiss warns under 39)
ITERATIONS = 10  # k-means rounds; the clusters only route the search, recall is measured after them

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # later rows (ascending), earlier rows (ascending within one), similarities


def exact_pairs(vectors: np.ndarray, threshold: float) -> Iterator[Pairs]:
    """Every pair at or above `threshold`, a block of later rows at a time (memory stays BLOCK x n): the
    products the all-pairs greedy made, so the same similarities and, resolved, the same result."""
    for start in range(0, len(vectors), BLOCK):
        stop = min(start + BLOCK, len(vectors))
        sims = vectors[start:stop] @ vectors[:stop].T
        r, c = np.nonzero(sims >= threshold)
        earlier = c < start + r
        r, c = r[earlier], c[earlier]
        yield start + r, c, sims[r, c]


def resolve(n: int, chunks: Iterable[Pairs]) -> tuple[np.ndarray, np.ndarray]:
    """(kept row each row duplicates or -1, their similarity): a row duplicates the most similar earlier
    neighbour that was itself kept (the earliest of equals), else it is kept. Chunks come in row order."""
    dup = np.full(n, -1, dtype=np.int64)
    sim = np.zeros(n, dtype=np.float32)
    kept = np.ones(n, dtype=bool)
    for later, earlier, sims in chunks:
        bounds = np.append(np.flatnonzero(np.diff(later, prepend=-1)), len(later))
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            s = np.where(kept[earlier[a:b]], sims[a:b], -np.inf)
            k = int(s.argmax())
            if s[k] > -np.inf:
                i = later[a]
                dup[i], sim[i], kept[i] = earlier[a + k], s[k], False
    return dup, sim


def nearest(vectors: np.ndarray, centroids: np.ndarray, probes: int) -> np.ndarray:
    """(rows, probes) indices of each row's most similar centroids, best first."""
    step = max(1, TILE // len(centroids))
    out = []
    for start in range(0, len(vectors), step):
        sims = vectors[start:start + step] @ centroids.T
        top = np.argpartition(-sims, probes - 1, axis=1)[:, :probes]
        order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
        out.append(np.take_along_axis(top, order, 1))
    return np.concatenate(out)


def kmeans(sample: np.ndarray, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Spherical k-means from `clusters` sampled rows: each round assigns every row to its most similar
    centroid and moves each centroid to its rows' normalised mean (an empty cluster stays put)."""
    centroids = sample[np.sort(rng.choice(len(sample), clusters, replace=False))]
    for _ in range(ITERATIONS):
        label = nearest(sample, centroids, 1)[:, 0]
        order = np.argsort(label, kind="stable")
        present, first = np.unique(label[order], return_index=True)
        sums = np.add.reduceat(sample[order], first, axis=0)
        centroids[present] = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    return centroids


def _by_cluster(cluster: np.ndarray, clusters: int, rows: np.ndarray) -> list[np.ndarray]:
    """`rows` split by their cluster, each part in row order."""
    order = np.argsort(cluster, kind="stable")
    return np.split(rows[order], np.searchsorted(cluster[order], np.arange(1, clusters)))


def top_neighbours(later: np.ndarray, earlier: np.ndarray, sims: np.ndarray, neighbours: int) -> Pairs:
    """Each later row's `neighbours` earliest neighbours (the best rows: the ones a family of near-copies
    keeps, so it collapses as under exact search), sorted as resolve wants them; a pair found twice
    counts once, at its larger similarity."""
    order = np.lexsort((-sims, earlier, later))
    later, earlier, sims = later[order], earlier[order], sims[order]
    first = np.ones(len(later), dtype=bool)
    first[1:] = (later[1:] != later[:-1]) | (earlier[1:] != earlier[:-1])
    later, earlier, sims = later[first], earlier[first], sims[first]
    starts = np.flatnonzero(np.diff(later, prepend=-1))
    rank = np.arange(len(later)) - np.repeat(starts, np.diff(np.append(starts, len(later))))
    keep = rank < neighbours
    return later[keep], earlier[keep], sims[keep]


def _tile_pairs(sims: np.ndarray, rows: np.ndarray, cols: np.ndarray, threshold: float, neighbours: int) -> Pairs:
    """Pairs of one tile, each as (later, earlier), at most `neighbours` per later row. Each row's
    similarity to itself is overwritten first, so only rows with a neighbour are searched for pairs."""
    self_row = np.flatnonzero(np.isin(rows, cols))
    sims[self_row, np.searchsorted(cols, rows[self_row])] = -1
    hit = np.flatnonzero(sims.max(axis=1) >= threshold)
    r, c = np.nonzero(sims[hit] >= threshold)
    a, b = rows[hit[r]], cols[c]
    return top_neighbours(np.maximum(a, b), np.minimum(a, b), sims[hit[r], c], neighbours)


def index_pairs(vectors: np.ndarray, threshold: float, cluster_rows: int, probes: int, neighbours: int, seed: int) -> Iterator[Pairs]:
    """Pairs at or above `threshold` where one row's own cluster is among the other's `probes` nearest,
    at most `neighbours` earlier ones per row; one chunk."""
    n = len(vectors)
    clusters = max(1, min(n, round(n / cluster_rows)))
    rng = np.random.default_rng(seed)
    sample = vectors[np.sort(rng.choice(n, min(n, clusters * TRAIN_PER_CLUSTER), replace=False))]
    probe = nearest(vectors, kmeans(sample, clusters, rng), min(probes, clusters))
    rows = np.arange(n)
    members = _by_cluster(probe[:, 0], clusters, rows)
    visitors = _by_cluster(probe.ravel(), clusters, np.repeat(rows, probe.shape[1]))
    found = [(rows[:0], rows[:0], np.zeros(0, dtype=np.float32))]
    for home, near in ((h, v) for h, v in zip(members, visitors) if len(h)):  # a cluster may be no row's own
        step = max(1, TILE // len(home))
        for start in range(0, len(near), step):
            part = near[start:start + step]
            sims = vectors[part] @ vectors[home].T
            found.append(_tile_pairs(sims, part, home, threshold, neighbours))
    yield top_neighbours(*(np.concatenate(f) for f in zip(*found)), neighbours)
