"""Semantic dedup benchmark: the k-means index (semantic.index) against exact all-pairs search, same run.

    python bench/semantic.py                                 # Alpaca 52K prompts, synthetic 50K and 200K
    python bench/semantic.py --sizes 50000 200000 1000000    # exact above --exact-up-to is extrapolated (n^2)
    python bench/semantic.py --sweep                         # recall and time of other cluster_rows x probes on Alpaca

Real: Alpaca's prompts embedded by the packaged MiniLM (through the embedding cache: minutes the first
time, seconds after), in a seeded random order. Synthetic: each row one of those vectors jittered to
cosine ~0.8 of it (so the set keeps real topics and their density; two jitters of one prompt meet at
~0.64), and 10% of rows near-copies (cosine ~0.95) of another row. Recall: of the pairs exact search
finds at the threshold, the share the index finds; of the rows exact marks duplicates, the share the
index marks (and rows it marks that exact keeps); of the planted (copy, original) pairs, the share
with one of the two marked. Each index
run is repeated on one BLAS thread and must give the same bytes.
"""

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.cache import cache_root  # noqa: E402
from pipeline.dedup.neighbours import exact_pairs, index_pairs, resolve  # noqa: E402
from pipeline.stages.embed import PACKAGED_MODEL, SentenceTransformerEmbedder, embed, matrix  # noqa: E402
from pipeline.stages.ingest import ingest  # noqa: E402
from schemas.config import EmbedConfig, IngestConfig, SemanticConfig  # noqa: E402

ALPACA = ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_data.json"


def alpaca_vectors(seed: int) -> np.ndarray:
    """MiniLM vectors of Alpaca's prompts, as the embed stage makes them, in a seeded random order."""
    frame, _ = ingest([ALPACA], IngestConfig())
    vectors = embed(frame, EmbedConfig(), SentenceTransformerEmbedder(PACKAGED_MODEL, device="cpu"), cache_root("embeddings"))
    return matrix(vectors, frame["id"])[np.random.default_rng(seed).permutation(frame.height)]


def jitter(vectors: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at about `cosine` to the rows given (Gaussian noise of norm tan(arccos cosine))."""
    noise = rng.standard_normal(vectors.shape, dtype=np.float32) * np.float32(np.tan(np.arccos(cosine)) / np.sqrt(vectors.shape[1]))
    out = vectors + noise
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def synthetic(seeds: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n rows jittered from real vectors, 10% of them near-copies of another (original) row; and the
    (copy, original) row numbers."""
    rng = np.random.default_rng(seed)
    rows = np.concatenate([jitter(seeds[rng.integers(0, len(seeds), min(n, 65_536))], 0.8, rng) for _ in range(0, n, 65_536)])[:n]
    shuffled = rng.permutation(n)
    copies, originals = shuffled[:n // 10], shuffled[n // 10:][rng.integers(0, n - n // 10, n // 10)]
    rows[copies] = jitter(rows[originals], 0.95, rng)
    return rows, np.stack([copies, originals], axis=1)


def pair_keys(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    return later.astype(np.int64) << 32 | earlier


def exact(vectors: np.ndarray, threshold: float) -> tuple[float, np.ndarray, np.ndarray]:
    """(seconds, pair keys, dup) of all-pairs search and the greedy."""
    start = time.perf_counter()
    chunks = list(exact_pairs(vectors, threshold))
    dup, _ = resolve(len(vectors), chunks)
    return time.perf_counter() - start, np.concatenate([pair_keys(c[0], c[1]) for c in chunks]), dup


def indexed(vectors: np.ndarray, threshold: float, cfg) -> tuple[float, np.ndarray, np.ndarray, str]:
    """(seconds, pair keys, dup, digest of pairs and result) of the index search and the greedy."""
    start = time.perf_counter()
    (later, earlier, sims), = index_pairs(vectors, threshold, cfg.cluster_rows, cfg.probes, cfg.neighbours, cfg.seed)
    dup, sim = resolve(len(vectors), [(later, earlier, sims)])
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(b"".join(a.tobytes() for a in (later, earlier, sims, dup, sim))).hexdigest()[:12]
    return seconds, pair_keys(later, earlier), dup, digest


def report(name: str, vectors: np.ndarray, threshold: float, cfg, exact_s: float | None, truth: tuple | None, planted=None) -> None:
    """One line: index time against exact's (measured with `truth`, else extrapolated), recall, determinism."""
    seconds, keys, dup, digest = indexed(vectors, threshold, cfg)
    with threadpool_limits(1):
        same = indexed(vectors, threshold, cfg)[3] == digest
    line = f"{name:<18} {len(vectors):>9,}  index {seconds:7.1f}s"
    if exact_s is not None:
        line += f"  exact {exact_s:7.1f}s{'    ' if truth else ' est'}  {exact_s / seconds:6.1f}x"
    if truth is not None:
        exact_keys, exact_dup = truth
        marked = ((dup >= 0) & (exact_dup >= 0)).sum() / max(1, (exact_dup >= 0).sum())
        line += (f"  pair recall {np.isin(exact_keys, keys).mean() if len(exact_keys) else 1.0:.4f}  dup recall {marked:.4f}"
                 f"  extra dups {int(((dup >= 0) & (exact_dup < 0)).sum())}")
    if planted is not None:
        line += f"  planted {np.mean((dup[planted] >= 0).any(axis=1)):.4f}"
    print(line + f"  {'deterministic' if same else 'DIFFERS ON 1 THREAD'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[50_000, 200_000])
    ap.add_argument("--exact-up-to", type=int, default=200_000, help="largest synthetic size exact search runs on")
    ap.add_argument("--threshold", type=float, default=SemanticConfig().threshold)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = SemanticConfig().index
    real = alpaca_vectors(args.seed)
    print(f"threshold {args.threshold}; index: cluster_rows {cfg.cluster_rows}, probes {cfg.probes}, neighbours {cfg.neighbours}; "
          f"exact: all-pairs products, the same greedy")
    seconds, keys, dup = exact(real, args.threshold)
    print(f"Alpaca: {len(keys):,} pairs, {(dup >= 0).sum():,} duplicates")
    report("alpaca", real, args.threshold, cfg, seconds, (keys, dup))
    if args.sweep:
        for cluster_rows in (250, 500, 1000, 2000):
            for probes in (1, 2, 4, 8):
                report(f"  rows {cluster_rows} x{probes}", real, args.threshold,
                       cfg.model_copy(update={"cluster_rows": cluster_rows, "probes": probes}), seconds, (keys, dup))
    measured = None  # (n, seconds) of the largest exact run, for extrapolating
    for n in args.sizes:
        vectors, planted = synthetic(real, n, args.seed)
        truth = None
        if n <= args.exact_up_to:
            seconds, keys, dup = exact(vectors, args.threshold)
            measured, truth = (n, seconds), (keys, dup)
        exact_s = None if measured is None else measured[1] * (n / measured[0]) ** 2
        report("synthetic", vectors, args.threshold, cfg, exact_s, truth, planted)


if __name__ == "__main__":
    main()
