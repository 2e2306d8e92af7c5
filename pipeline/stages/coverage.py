"""Quality x coverage selection: greedy facility location with a quality term (QDIT, Bukharin et al. 2023).

The objective of a set S of a pool of N rows is

    f(S) = (1 - w) * coverage(S) + w * quality(S)
    coverage(S) = mean over the pool of max_{s in S} sim(row, s)      (facility location, in [0, 1])
    quality(S)  = sum over S of score / budget                          (in [0, 1])

with sim the cosine similarity of embeddings, clipped at 0 and set to 0 between rows of different
languages or turn classes (single-turn vs multi-turn): an English prompt does not cover a Chinese
one, nor a one-shot question a conversation. f is monotone submodular, so greedy picking is within
1 - 1/e of the best set, and a row's gain only shrinks as picks accumulate: lazy greedy re-evaluates
only the row on top of the heap, which keeps a pool of thousands cheap. Needs the whole pool at once.
"""

import heapq
from collections.abc import Callable

import numpy as np


def coverage_similarity(vectors: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Pairwise similarity that coverage counts: cosine clipped at 0, and 0 across groups."""
    sims = np.clip(vectors @ vectors.T, 0.0, None)
    sims *= groups[:, None] == groups[None, :]
    return sims


class LazyGreedy:
    """Maximise f(S) pick by pick; `accept(i, coverage_gain)` may refuse a row (a full quota), which then leaves."""

    def __init__(self, sims: np.ndarray, quality: np.ndarray, budget: int, weight: float):
        self.sims, self.quality, self.budget, self.weight = sims, quality, budget, weight
        self.cover = np.zeros(len(sims), dtype=np.float32)
        self.picks: list[int] = []
        self.last_gain: dict[int, float] = {}

    def coverage_gain(self, i: int) -> float:
        return float(np.maximum(self.sims[i] - self.cover, 0.0).sum()) / len(self.sims)

    def gain(self, i: int) -> float:
        return (1 - self.weight) * self.coverage_gain(i) + self.weight * float(self.quality[i]) / self.budget

    def run(self, candidates: list[int], accept: Callable[[int, float], bool]) -> None:
        """Pick among `candidates` (best-ranked first, which breaks ties) until the budget is filled or none is left."""
        heap = [(-self.gain(i), order, i) for order, i in enumerate(candidates)]
        heapq.heapify(heap)
        while heap and len(self.picks) < self.budget:
            _, order, i = heapq.heappop(heap)
            fresh = self.gain(i)
            self.last_gain[i] = fresh
            if heap and fresh < -heap[0][0]:  # stale bound: another row may now be better
                heapq.heappush(heap, (-fresh, order, i))
                continue
            if accept(i, self.coverage_gain(i)):
                self.picks.append(i)
                np.maximum(self.cover, self.sims[i], out=self.cover)


def farthest_first(vectors: np.ndarray, k: int) -> np.ndarray:
    """Greedy k-center: row 0 (the best ranked) first, then always the row least similar to every pick so far.

    Spreads k rows over the whole embedded pool, so the rows that are scored (the costly step) already
    cover it; ties go to the earlier (better ranked) row.
    """
    picks = [0]
    maxsim = vectors @ vectors[0]
    maxsim[0] = np.inf
    for _ in range(min(k, len(vectors)) - 1):
        i = int(maxsim.argmin())
        picks.append(i)
        np.maximum(maxsim, vectors @ vectors[i], out=maxsim)
        maxsim[i] = np.inf
    return np.array(picks)
