"""Dedup benchmark: winnow vs datasketch (MinHash.bulk + MinHashLSH) vs rensa, same shingles, same run.

    python bench/dedup.py                      # Alpaca 52K + 2,000 planted near-duplicates (a few minutes)
    python bench/dedup.py --synthetic 1000000  # also a synthetic 1M set (winnow; baselines on its first 50K)
    python bench/dedup.py --sweep              # quality and time of other thresholds, shingles and bands

Each method runs end to end (normalise, shingle, sign, band, verify, cluster) in its own process,
so peak memory is its own; every method compares instruction and response as two fields (a pair
is a duplicate when both reach the threshold). Quality: drop precision (exact Jaccard, on every
field, of each dropped row with the row it was dropped for), recall against exact all-pairs
Jaccard for a uniform sample of rows (a pair counts as found when both rows end in one cluster),
and recall of the planted copies.
"""

import argparse
import functools
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.dedup.cluster import components  # noqa: E402
from pipeline.dedup.lsh import bucket_keys, candidates_of_any, sorted_unique  # noqa: E402
from pipeline.dedup.minhash import shingle_hashes, shingles, signatures  # noqa: E402
from pipeline.stages.dedup import compared_fields, dedup, folded  # noqa: E402
from pipeline.stages.ingest import ingest  # noqa: E402
from schemas.config import DedupConfig, IngestConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def edit(text: str, rate: float, rng: random.Random, vocab: list[str]) -> str:
    """Delete, substitute, insert or swap about `rate` of the words: a seeded near-duplicate."""
    words = text.split(" ")
    for k in range(len(words)):
        if rng.random() < rate:
            op = rng.randrange(4)
            if op == 3 and k + 1 < len(words):
                words[k], words[k + 1] = words[k + 1], words[k]
            else:
                words[k] = ["", rng.choice(vocab), words[k] + " " + rng.choice(vocab), words[k]][op]
    return " ".join(w for w in words if w)


def plant(frame: pl.DataFrame, count: int, low: float, high: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Frame plus `count` edited copies (ids planted-k); and the truth (original id, copy id)."""
    rng = random.Random(seed)
    vocab = sorted({w for t in frame["response"].head(2000).to_list() for w in t.split()})
    picks = [rng.randrange(frame.height) for _ in range(count)]
    rows = frame[picks].to_dicts()
    for k, row in enumerate(rows):
        rate = rng.uniform(low, high)
        row.update(id=f"planted-{k}", instruction=edit(row["instruction"], rate, rng, vocab),
                   response=edit(row["response"], rate, rng, vocab))
    copies = pl.DataFrame(rows, schema=frame.schema)
    return pl.concat([frame, copies]), pl.DataFrame({"original": frame["id"].gather(picks), "copy": copies["id"]})


def alpaca(planted: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame, _ = ingest([DATA / "alpaca" / "alpaca_data.json"], IngestConfig())
    return plant(frame.select("id", "instruction", "response", "drop_stage", "drop_reason", "drop_detail"), planted, 0.05, 0.15, 0)


def _union_find(n: int, i: list[int], j: list[int], ids: pl.Series) -> pl.DataFrame:
    head = components(n, np.array(i, dtype=np.int64), np.array(j, dtype=np.int64))
    kept = head == np.arange(n)
    return pl.DataFrame({"id": ids, "cluster": ids.gather(head), "dup_of": ids.gather(head)}).with_columns(
        dup_of=pl.when(pl.Series(kept)).then(None).otherwise(pl.col("dup_of")))


def field_texts(frame: pl.DataFrame, cfg: DedupConfig) -> list[pl.Series]:
    """Each compared field of every row, folded as the dedup stage folds it."""
    return [frame.select(folded(f)).to_series() for f in compared_fields(cfg)]


def _both_fields(sigs: list, candidates: list[set], cfg: DedupConfig) -> tuple[list[int], list[int]]:
    """Pairs found in any field's LSH whose estimated Jaccard reaches the threshold on every field."""
    pairs = [(k, q) for k, found in enumerate(map(set.union, *candidates)) for q in found
             if q > k and all(field[k].jaccard(field[q]) >= cfg.threshold for field in sigs)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def run_datasketch(frame: pl.DataFrame, cfg: DedupConfig) -> pl.DataFrame:
    from datasketch import MinHash, MinHashLSH
    sigs, candidates = [], []
    for texts in field_texts(frame, cfg):
        sets = [[s.encode() for s in set(shingles(t, cfg.ngram, cfg.shingle))] for t in texts.to_list()]
        field = MinHash.bulk(sets, num_perm=cfg.num_perm, seed=cfg.seed)
        lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, params=(cfg.bands, cfg.num_perm // cfg.bands))
        for k, m in enumerate(field):
            lsh.insert(k, m)
        sigs.append(field)
        candidates.append([set(lsh.query(m)) for m in field])
    return _union_find(frame.height, *_both_fields(sigs, candidates, cfg), frame["id"])


def run_rensa(frame: pl.DataFrame, cfg: DedupConfig) -> pl.DataFrame:
    from rensa import RMinHash, RMinHashLSH
    sigs, candidates = [], []
    for texts in field_texts(frame, cfg):
        field = RMinHash.from_token_sets([set(shingles(t, cfg.ngram, cfg.shingle)) for t in texts.to_list()], cfg.num_perm, cfg.seed)
        lsh = RMinHashLSH(cfg.threshold, cfg.num_perm, cfg.bands)
        lsh.insert_many(field)
        sigs.append(field)
        candidates.append([set(found) for found in lsh.query_all(field)])
    return _union_find(frame.height, *_both_fields(sigs, candidates, cfg), frame["id"])


def run_winnow(frame: pl.DataFrame, cfg: DedupConfig) -> pl.DataFrame:
    return dedup(frame.with_columns(quality=pl.lit(None, pl.Float64)), cfg).select("id", cluster="dedup_cluster", dup_of="dup_of")


METHODS = {"winnow": run_winnow, "datasketch": run_datasketch, "rensa": run_rensa}


def worker(method: str, data: str, out: str, cfg_json: str) -> None:
    """Run one method on a parquet file; print seconds and peak memory, write its clusters."""
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS inherited from the forking parent: reset
    frame, cfg = pl.read_parquet(data), DedupConfig.model_validate_json(cfg_json)
    base = _rss_mb("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    result = METHODS[method](frame, cfg)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = _rss_mb("VmHWM")
    result.write_parquet(out)
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "peak_mb": peak, "over_load_mb": peak - base}))


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the reset) of this process, in MB."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1]) / 1024


def spawn(method: str, frame_path: Path, cfg: DedupConfig, tmp: Path) -> tuple[dict, pl.DataFrame]:
    out = tmp / f"{method}.parquet"
    done = subprocess.run([sys.executable, __file__, "--worker", method, str(frame_path), str(out), cfg.model_dump_json()],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), pl.read_parquet(out)


def sample_truth(fields: list[pl.Series], size: int, threshold: float, cfg: DedupConfig, seed: int = 0) -> pl.DataFrame:
    """(a, b) row pairs with exact Jaccard >= threshold on every field, a from a uniform sample, b any row."""
    pairs = [_field_truth(texts, size, threshold, cfg, seed) for texts in fields]
    return functools.reduce(lambda x, y: x.join(y, on=["a", "b"]), pairs)


def _field_truth(texts: pl.Series, size: int, threshold: float, cfg: DedupConfig, seed: int) -> pl.DataFrame:
    """(a, b) row pairs with exact Jaccard >= threshold on one field (sparse products)."""
    counts, hashes = shingle_hashes(texts.to_list(), cfg.ngram, cfg.shingle)
    doc = np.repeat(np.arange(len(texts), dtype=np.uint64), counts)
    keys = sorted_unique(doc << np.uint64(32) | hashes.astype(np.uint64))
    rows, cols = (keys >> np.uint64(32)).astype(np.int64), keys & np.uint64(0xFFFFFFFF)
    x = sp.csr_matrix((np.ones(len(keys), np.float32), (rows, np.searchsorted(sorted_unique(cols), cols))), shape=(len(texts), int(len(sorted_unique(cols)))))
    sizes = np.asarray(x.sum(axis=1)).ravel()
    queries = np.random.default_rng(seed).choice(len(texts), min(size, len(texts)), replace=False)
    found = []
    for lo in range(0, len(queries), 250):
        q = queries[lo:lo + 250]
        inter = (x @ x[q].T).tocoo()
        union = sizes[inter.row] + sizes[q[inter.col]] - inter.data
        hit = (inter.data >= threshold * union) & (inter.row != q[inter.col]) & (union > 0)
        found.append(pl.DataFrame({"a": q[inter.col[hit]], "b": inter.row[hit]}))
    return pl.concat(found)


def exact(a: str, b: str, cfg: DedupConfig) -> float:
    x, y = set(shingles(a, cfg.ngram, cfg.shingle)), set(shingles(b, cfg.ngram, cfg.shingle))
    return len(x & y) / len(x | y) if x | y else 1.0


def quality(frame: pl.DataFrame, result: pl.DataFrame, truth: pl.DataFrame, planted: pl.DataFrame, cfg: DedupConfig) -> dict:
    """Drop precision, sample pair recall and planted recall of one method's clusters (similarity: the lower field's)."""
    text = list(zip(*[t.to_list() for t in field_texts(frame, cfg)]))
    row = {k: v for v, k in enumerate(frame["id"].to_list())}
    similarity = lambda x, y: min(exact(p, q, cfg) for p, q in zip(text[row[x]], text[row[y]]))  # noqa: E731
    sims = [similarity(x, y) for x, y in result.filter(pl.col("dup_of").is_not_null()).select("id", "dup_of").iter_rows()]
    cluster = result["cluster"].to_numpy()
    index = {k: v for v, k in enumerate(result["id"].to_list())}
    pair_found = cluster[truth["a"].to_numpy()] == cluster[truth["b"].to_numpy()]
    a, b = [index[i] for i in planted["original"]], [index[i] for i in planted["copy"]]
    copies = cluster[a] == cluster[b]
    alike = np.array([similarity(x, y) >= cfg.threshold for x, y in zip(planted["original"], planted["copy"])])
    return {"drops": len(sims), "drop_precision": float(np.mean(np.array(sims) >= cfg.threshold - 1e-12)) if sims else 1.0,
            "sample_pairs": len(truth), "pair_recall": float(pair_found.mean()) if len(truth) else 1.0,
            "planted_recall": float(copies.mean()), "planted_recall_above_t": float(copies[alike].mean()), "max_cluster": int(result.group_by("cluster").len()["len"].max())}


def synthetic(frame: pl.DataFrame, size: int, seed: int = 1) -> pl.DataFrame:
    """`size` rows drawn from the frame with replacement, each edited at a rate between 0 and 30%."""
    rng = random.Random(seed)
    vocab = sorted({w for t in frame["response"].head(2000).to_list() for w in t.split()})
    rows = frame[[rng.randrange(frame.height) for _ in range(size)]].to_dicts()
    for k, row in enumerate(rows):
        rate = rng.uniform(0.0, 0.3)
        row.update(id=f"synthetic-{k}", instruction=edit(row["instruction"], rate, rng, vocab),
                   response=edit(row["response"], rate, rng, vocab))
    return pl.DataFrame(rows, schema=frame.schema)


def compare(frame: pl.DataFrame, cfg: DedupConfig, tmp: Path, label: str, score=None) -> None:
    """Run every installed method on one frame and print speed, memory, ratio to datasketch, quality."""
    path = tmp / f"{label}.parquet"
    frame.write_parquet(path)
    methods = ["winnow", "datasketch"] + (["rensa"] if _has("rensa") else [])
    speed = {}
    print(f"\n{label}: {frame.height:,} records; {cfg.shingle} {cfg.ngram}-grams, threshold {cfg.threshold}, "
          f"{cfg.num_perm} perms = {cfg.bands} bands x {cfg.num_perm // cfg.bands} rows")
    for method in methods:
        stats, result = spawn(method, path, cfg, tmp)
        speed[method] = frame.height / stats["seconds"]
        line = f"  {method:<10} {stats['seconds']:7.2f}s (cpu {stats['cpu_s']:6.2f}s) {speed[method]:9,.0f} rec/s  peak {stats['peak_mb']:6.0f} MB ({stats['over_load_mb']:+.0f} MB over load)"
        if score:
            q = score(result)
            line += "  " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in q.items())
        print(line, flush=True)
    for method in methods:
        print(f"  {method} / datasketch: {speed[method] / speed['datasketch']:.1f}x")


def _has(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


SWEEP = [{}, {"threshold": 0.4}, {"threshold": 0.6}, {"ngram": 4}, {"ngram": 7}, {"shingle": "word", "ngram": 2},
         {"num_perm": 96, "bands": 32}, {"num_perm": 96, "bands": 24}, {"num_perm": 160, "bands": 40},
         {"num_perm": 64, "bands": 16}, {"bucket_all_pairs": 4}, {"bucket_all_pairs": 64}]


def sweep(frame: pl.DataFrame, planted: pl.DataFrame, sample: int) -> None:
    """Time and quality of winnow under other settings (in this process, so times are comparable)."""
    print("\nsweep (winnow only): change from the defaults -> seconds, quality")
    for change in SWEEP:
        cfg = DedupConfig(**change)
        start = time.perf_counter()
        result = run_winnow(frame, cfg)
        seconds = time.perf_counter() - start
        truth = sample_truth(field_texts(frame, cfg), sample, cfg.threshold, cfg)
        q = quality(frame, result, truth, planted, cfg)
        sigs = [signatures(keys, cfg.ngram, cfg.shingle, cfg.num_perm, cfg.seed) for keys in field_texts(frame, cfg)]
        q["candidates"] = len(candidates_of_any([bucket_keys(s, cfg.bands) for s in sigs], cfg.bucket_all_pairs)[0])
        print(f"  {json.dumps(change) or 'defaults':<36} {seconds:6.2f}s  " + "  ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in q.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planted", type=int, default=2000, help="near-duplicates planted into Alpaca 52K")
    parser.add_argument("--sample", type=int, default=3000, help="rows whose exact all-pairs Jaccard is the truth")
    parser.add_argument("--synthetic", type=int, default=0, help="also run a synthetic set of this many rows")
    parser.add_argument("--sweep", action="store_true", help="also measure other settings")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)
    if not (DATA / "alpaca").is_dir():
        sys.exit(f"needs {DATA / 'alpaca'}")
    cfg = DedupConfig()
    frame, planted = alpaca(args.planted)
    truth = sample_truth(field_texts(frame, cfg), args.sample, cfg.threshold, cfg)
    print(f"truth: {len(truth):,} pairs with exact Jaccard >= {cfg.threshold} for {args.sample:,} sampled rows")
    with tempfile.TemporaryDirectory() as tmp:
        compare(frame, cfg, Path(tmp), "alpaca+planted", lambda r: quality(frame, r, truth, planted, cfg))
        if args.synthetic:
            big = synthetic(frame, args.synthetic)
            compare(big.head(50_000), cfg, Path(tmp), "synthetic-50K")
            frame_path = Path(tmp) / "synthetic.parquet"
            big.write_parquet(frame_path)
            stats, _ = spawn("winnow", frame_path, cfg, Path(tmp))
            print(f"  winnow on {big.height:,}: {stats['seconds']:.1f}s (cpu {stats['cpu_s']:.1f}s) {big.height / stats['seconds']:,.0f} rec/s "
                  f"peak {stats['peak_mb']:,.0f} MB ({stats['over_load_mb']:+,.0f} MB over load)")
    if args.sweep:
        sweep(frame, planted, args.sample)


if __name__ == "__main__":
    main()
