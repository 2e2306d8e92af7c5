"""Clusters and keepers over verified duplicate pairs; node 0 is the best record, node 1 the next...

Needs every verified pair of the run at once.
"""

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

MAX_ROUNDS = 64  # parallel greedy rounds before the remaining open nodes are walked in order


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Union-find over the pairs: each node's label is the smallest node index in its component."""
    _, label = connected_components(sp.coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n)), directed=False)
    smallest = np.full(label.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(smallest, label, np.arange(n))
    return smallest[label]


def greedy_keepers(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Best-first greedy over verified pairs (node 0 is the best): -1 for kept, else the kept node it duplicates.

    A node is dropped only when it pairs with a better node that is kept, so every drop is verified
    against its own keeper and chains (A~B~C, A!~C) keep C. Decided in parallel rounds (as many as
    the longest chain of such decisions), then in order for what long chains leave open.
    """
    better, worse = np.minimum(i, j), np.maximum(i, j)
    state = np.zeros(n, dtype=np.int8)  # 0 open, 1 kept, 2 dropped
    state[np.setdiff1d(np.arange(n), worse)] = 1
    for _ in range(MAX_ROUNDS):
        live = state[worse] == 0
        better, worse = better[live], worse[live]
        if not len(worse):
            break
        state[worse[state[better] == 1]] = 2
        blocked = np.zeros(n, dtype=bool)
        blocked[worse[(state[worse] == 0) & (state[better] == 0)]] = True
        state[(state == 0) & ~blocked] = 1
    else:
        _walk(state, better, worse)
    return _keeper_of(state, np.minimum(i, j), np.maximum(i, j))


def _walk(state: np.ndarray, better: np.ndarray, worse: np.ndarray) -> None:
    """Decide the nodes still open one by one, best first (only long chains get here)."""
    order = np.argsort(worse, kind="stable")
    better, worse = better[order], worse[order]
    bounds = np.searchsorted(worse, np.arange(len(state) + 1))
    for node in np.flatnonzero(state == 0):
        state[node] = 2 if (state[better[bounds[node]:bounds[node + 1]]] == 1).any() else 1


def _keeper_of(state: np.ndarray, better: np.ndarray, worse: np.ndarray) -> np.ndarray:
    """-1 for kept nodes; for dropped ones the best kept node they pair with."""
    dup_of = np.full(len(state), len(state), dtype=np.int64)
    edge = (state[better] == 1) & (state[worse] == 2)
    np.minimum.at(dup_of, worse[edge], better[edge])
    return np.where(state == 2, dup_of, -1)
