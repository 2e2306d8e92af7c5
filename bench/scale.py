"""Scale-out benchmark (issue 14): `curate` end to end on 1M and 2M generated pairs; time, records/s and memory.

    .venv/bin/python bench/scale.py                                   # 1M and 2M, then engines and samples
    .venv/bin/python bench/scale.py --sizes 1000000 --no-engines      # one size only
    .venv/bin/python bench/scale.py --sizes 200000 --only-generate --keep

Data: N pairs generated from ../shared/data with seeded edits (`--seed`), written as JSON Lines
(Alpaca fields, `--file-rows` per file) under a temporary folder in /tmp. Every source record once
as it is (Alpaca 52K, self-instruct seed instances, the near-duplicate examples, Chinese Alpaca,
BELLE, MGSM in 11 languages: about 80% English), then distinct variants of them (45-70% of the
words replaced by words of the same language, so they are not near duplicates of each other), then
`--near` near copies of those rows (2-8% of the words swapped, dropped, inserted or replaced, some
lower-cased or with the end punctuation cut) and `--exact` verbatim copies, all shuffled together.
Chinese, Japanese and Thai are edited character by character. Dolly is not in ../shared/data.

Each curate run is its own process (`language.backend: fasttext`, `score.enabled: false`, the
default budget), with a fresh embedding cache and Prefect home; its RSS (and that of its process
tree: the temporary Prefect server, Dask workers) is sampled every `--sample-every` seconds and
attributed to the stage whose manifest window (`started`, `seconds`) holds the sample. Peak RSS is
the curate process's own high-water mark (VmHWM). Polars and numpy allocate outside Python's heap,
so tracemalloc would not see them: RSS is the measure.

`--engines` (on by default): the per-row stages (heuristics, language, decontam, pii, minhash; category) on a
Dask LocalCluster with 2 workers against 1, threads pinned to 1 (POLARS_MAX_THREADS, OMP_NUM_THREADS,
MKL_NUM_THREADS) in both, on `--engine-rows` rows in shards of `--engine-shard-rows`. The per-row
wall time is the sum over the per-row groups (heuristics..minhash, then category, which runs after
dedup) of max(started + seconds) - min(started). Each shard stage is a Prefect task with about 0.2 s of
orchestration around it (its states, the scheduler's hand-off), paid on the same 2 cores as the work:
measured here, 400K rows in the default shards of 100K scale 1.90x, 200K in shards of 20K (4x the tasks
per row) 1.61x; two pure-Python processes on this machine scale 1.87-2.1x.

On the first size's run: langdetect (the default backend) and fastText on a `--lang-sample` row
sample of the language stage's input, scaled to the run by its distinct texts; and model scoring
(SmolLM2-135M) of a `--score-sample` row sample of the run's own scoring pool, scaled to the pool.

Figures go to stdout. Targets (issue 14): 1M in <= 15 min on 2 cores, peak RSS <= 3 GB, per-row
stages' peak RSS at 2M <= 1.3x that at 1M, Dask 2 workers >= 1.7x 1 worker on the per-row stages.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
PER_ROW = ("heuristics", "language", "decontam", "pii", "minhash", "category")
CHAR_LANGS = ("zh", "ja", "th")  # no spaces between words: edited character by character
PINNED = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
FIELDS = ("instruction", "input", "output")
GiB = 1024 ** 3


# ---------------------------------------------------------------- generation

def base_records() -> pl.DataFrame:
    """Every source record once: src, lang, instruction, input, output (sorted by language)."""
    def load(path: Path):
        return json.loads(path.read_text(encoding="utf-8"))

    def alpaca_like(rows, src, lang):
        return pl.DataFrame({"src": src, "lang": lang, "instruction": [r["instruction"] for r in rows],
                             "input": [r.get("input") or "" for r in rows], "output": [r["output"] for r in rows]})

    parts = [alpaca_like(load(DATA / "alpaca" / "alpaca_data.json"), "alpaca", "en"),
             alpaca_like(load(DATA / "neardup" / "instruction-examples.json"), "neardup", "en"),
             alpaca_like(load(DATA / "multilingual" / "alpaca_zh" / "zh-data-part-00.json"), "alpaca_zh", "zh")]
    seeds = [json.loads(line) for line in (DATA / "self_instruct" / "seed_tasks.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    parts.append(alpaca_like([{"instruction": t["instruction"], **i} for t in seeds for i in t["instances"]], "self_instruct", "en"))
    belle = [json.loads(line) for line in (DATA / "multilingual" / "belle" / "eval_eval_set.json").read_text(encoding="utf-8").splitlines() if line.strip()]
    parts.append(alpaca_like([{"instruction": r["question"], "output": r["std_answer"]} for r in belle], "belle", "zh"))
    for f in sorted((DATA / "multilingual" / "mgsm").glob("mgsm_*.tsv")):
        t = pl.read_csv(f, separator="\t", has_header=False, quote_char=None, infer_schema=False)
        parts.append(pl.DataFrame({"src": "mgsm", "lang": f.stem.split("_")[-1], "instruction": t[:, 0],
                                   "input": "", "output": t[:, 1]}))
    base = pl.concat([p.cast({c: pl.String for c in p.columns}) for p in parts])
    return base.with_row_index("order").sort("lang", "order").drop("order")


def tokens(texts: pl.Series, char: bool) -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """Flat tokens of each text (words split on single spaces, or characters), offsets and lengths."""
    lists = texts.str.split("") if char else texts.str.split(" ")
    counts = lists.list.len().to_numpy().astype(np.int64)
    nonempty = texts.str.len_chars().to_numpy() > 0  # '' is no token, in either mode (split(" ") gives [''])
    flat = lists.explode().filter(pl.Series(np.repeat(nonempty, counts)))
    lengths = np.where(nonempty, counts, 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return flat, offsets, lengths


def edit(table: pl.Series, off: np.ndarray, length: np.ndarray, rate: np.ndarray, probs: tuple[float, float, float, float],
         lo: np.ndarray, hi: np.ndarray, sep: str, rng: np.random.Generator) -> pl.Series:
    """One text per row: tokens table[off:off+length], each hit with probability `rate` by one of
    (drop, replace, insert after, swap with the next) in proportions `probs`; replacements and insertions
    are drawn from table[lo:hi] of the row. Vectorised over all rows' tokens at once."""
    import pyarrow as pa

    n, total = len(off), int(length.sum())
    row = np.repeat(np.arange(n), length)
    idx = np.arange(total) + np.repeat(off - np.concatenate([[0], np.cumsum(length)[:-1]]), length)
    hit = rng.random(total) < rate[row]
    op = np.searchsorted(np.cumsum(probs), rng.random(total) * sum(probs), side="right")
    span = (hi - lo)[row]
    def draw() -> np.ndarray:
        return lo[row] + np.minimum((rng.random(total) * span).astype(np.int64), np.maximum(span - 1, 0))

    vals = idx.copy()
    sub = hit & (op == 1) & (span > 0)
    vals[sub] = draw()[sub]
    swap = hit & (op == 3)
    swap[:-1] &= row[1:] == row[:-1]
    swap[-1:] = False
    swap[1:] &= ~swap[:-1]
    at = np.flatnonzero(swap)
    vals[at], vals[at + 1] = vals[at + 1].copy(), vals[at].copy()
    keep = ~(hit & (op == 0))
    ins = hit & (op == 2) & (span > 0)
    pos = np.arange(total)
    keys = np.concatenate([pos[keep] * 2, pos[ins] * 2 + 1])
    order = np.argsort(keys, kind="stable")
    out_vals = np.concatenate([vals[keep], draw()[ins]])[order]
    out_row = np.concatenate([row[keep], row[ins]])[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(out_row, minlength=n))]).astype(np.int64)
    values = table.gather(out_vals).to_arrow()
    lists = pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(offsets), values))
    return lists.list.join(sep).alias("text")


def edited(frame: pl.DataFrame, rate: np.ndarray, probs, pools: dict | None, rng: np.random.Generator) -> pl.DataFrame:
    """Each field of each row edited at its row's rate. pools: lang -> (table, lo, hi) to draw from, else the row's own text."""
    out = {f: [None] * frame.height for f in FIELDS}
    char = frame["lang"].is_in(CHAR_LANGS).to_numpy()
    for mode in (False, True):
        rows = np.flatnonzero(char == mode)
        if not len(rows):
            continue
        part = frame[rows]
        langs = part["lang"].to_numpy()
        for f in FIELDS:
            flat, off, length = tokens(part[f], mode)
            if pools is None:  # near copies: replacements from the row's own text
                table, lo, hi = flat, off, off + length
            else:  # variants: from the words of the row's language; the row's own text is appended to the pool table
                pool = pools[mode]
                table = pl.concat([flat, pool["table"]])
                shift = len(flat)
                lo = np.array([pool["range"][lang][0] for lang in langs], dtype=np.int64) + shift
                hi = np.array([pool["range"][lang][1] for lang in langs], dtype=np.int64) + shift
            texts = edit(table, off, length, rate[rows], probs, lo, hi, "" if mode else " ", rng).to_list()
            for k, t in zip(rows, texts):
                out[f][k] = t
    return frame.with_columns(**{f: pl.Series(out[f], dtype=pl.String) for f in FIELDS})


def language_pools(base: pl.DataFrame) -> dict:
    """Per mode (words, characters): one table of the instruction and output tokens of every language, and each language's range."""
    pools = {}
    for mode in (False, True):
        part = base.filter(pl.col("lang").is_in(CHAR_LANGS) == mode)
        tables, ranges, at = [], {}, 0
        for lang in part["lang"].unique(maintain_order=True).to_list():
            texts = part.filter(pl.col("lang") == lang).select(pl.concat([pl.col("instruction"), pl.col("output")])).to_series()
            flat = tokens(texts, mode)[0]
            flat = flat.filter(flat.str.len_chars() > 0)
            ranges[lang] = (at, at + len(flat))
            tables.append(flat)
            at += len(flat)
        pools[mode] = {"table": pl.concat(tables), "range": ranges}
    return pools


def generate(n: int, seed: int, out: Path, file_rows: int, exact: float, near: float) -> dict:
    """Write n generated pairs as JSON Lines files into `out`; returns the mix and the time."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    base = base_records()
    n_exact, n_near = int(n * exact), int(n * near)
    primaries = n - n_exact - n_near
    originals = min(primaries, base.height)
    first = base[np.sort(rng.choice(base.height, originals, replace=False))] if originals < base.height else base
    parts = [first.with_columns(kind=pl.lit("original"))]
    pools = language_pools(base)
    todo = primaries - originals
    for lo in range(0, todo, 100_000):
        k = min(100_000, todo - lo)
        pick = base[rng.integers(0, base.height, k)]
        parts.append(edited(pick, rng.uniform(0.45, 0.70, k), (0.10, 0.70, 0.20, 0.0), pools, rng).with_columns(kind=pl.lit("variant")))
    prim = pl.concat(parts)
    copies = []
    for lo in range(0, n_near, 100_000):
        k = min(100_000, n_near - lo)
        pick = prim[rng.integers(0, prim.height, k)]
        near_rows = edited(pick, rng.uniform(0.02, 0.08, k), (0.25, 0.25, 0.25, 0.25), None, rng)
        lower, cut = pl.Series(rng.random(k) < 0.25), pl.Series(rng.random(k) < 0.25)
        near_rows = near_rows.with_columns(
            instruction=pl.when(pl.lit(lower)).then(pl.col("instruction").str.to_lowercase()).otherwise("instruction")
        ).with_columns(**{f: pl.when(pl.lit(cut)).then(pl.col(f).str.strip_chars_end(".!?。！？")).otherwise(f)
                          for f in ("instruction", "output")})
        copies.append(near_rows.with_columns(kind=pl.lit("near")))
    if n_exact:
        copies.append(prim[rng.integers(0, prim.height, n_exact)].with_columns(kind=pl.lit("exact")))
    rows = pl.concat([prim, *copies])
    rows = rows[rng.permutation(rows.height)]
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k, lo in enumerate(range(0, rows.height, file_rows)):
        path = out / f"part-{k:03d}.jsonl"
        rows.slice(lo, file_rows).select(FIELDS).write_ndjson(path)
        files.append(path)
    seconds = time.perf_counter() - start
    mix = {"kind": dict(rows.group_by("kind").len().sort("len", descending=True).iter_rows()),
           "lang": dict(rows.group_by("lang").len().sort("len", descending=True).iter_rows()),
           "src": dict(rows.group_by("src").len().sort("len", descending=True).iter_rows())}
    return {"rows": rows.height, "files": len(files), "bytes": sum(f.stat().st_size for f in files), "seconds": seconds, "mix": mix}


# ---------------------------------------------------------------- child processes

def _hwm_mb() -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def _rss_mb() -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def worker_generate(p: dict) -> dict:
    return generate(p["n"], p["seed"], Path(p["out"]), p["file_rows"], p["exact"], p["near"]) | {"peak_mb": _hwm_mb()}


def worker_curate(p: dict) -> dict:
    import flows.curate
    from schemas.config import CurationConfig

    assert flows.curate.__file__.startswith(str(ROOT)), flows.curate.__file__
    start = time.time()
    manifest = flows.curate.curate(inputs=[p["data"]], out=p["out"], config=CurationConfig.model_validate(p["config"]))
    end = time.time()
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"flow_start": start, "flow_end": end, "peak_mb": _hwm_mb(), "cpu_s": usage.ru_utime + usage.ru_stime,
            "stages": manifest["stages"], "counts": {k: manifest["counts"][k] for k in ("input", "curated", "rejected", "quarantined", "by_reason")}}


def _judgeable(texts: pl.Series, min_letters: int) -> pl.Series:
    cjk = texts.str.count_matches(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")
    return ((texts.str.count_matches(r"\p{L}") >= min_letters) | (cjk >= -(-min_letters // 3))).fill_null(False)


def worker_samples(p: dict) -> dict:
    """langdetect and fastText on a sample of the language stage's input; SmolLM2 on a sample of the scoring pool;
    the in-memory size of the ledger by column."""
    from pipeline.mark import ALIVE
    from pipeline.stages.language import language, prefix
    from pipeline.stages.language_detect import make_detector
    from pipeline.stages.score import LMScorer, score_answers, scoring_pool
    from schemas.config import LanguageConfig, ScoreConfig, SelectConfig

    run, res = Path(p["run"]), {}
    shards = sorted((run / "stages").glob("heuristics-*.parquet"))
    distinct, alive = 0, 0
    cfg = LanguageConfig(backend="fasttext")
    frames = []
    for path in shards:  # the language stage asks once per distinct judgeable text within each shard
        f = pl.read_parquet(path).filter(ALIVE)
        texts = pl.concat([f.select(prefix(pl.col(c), cfg.max_chars)).to_series() for c in ("instruction", "response")])
        distinct += texts.filter(_judgeable(texts, cfg.min_letters)).n_unique()
        alive += f.height
        frames.append(f.sample(min(f.height, -(-p["lang_sample"] // len(shards))), seed=0))
    sample = pl.concat(frames).head(p["lang_sample"])
    texts = pl.concat([sample.select(prefix(pl.col(c), cfg.max_chars)).to_series() for c in ("instruction", "response")])
    sample_distinct = texts.filter(_judgeable(texts, cfg.min_letters)).n_unique()
    res["lang"] = {"run_alive": alive, "run_distinct": distinct, "shards": len(shards), "sample_rows": sample.height, "sample_distinct": sample_distinct}
    for backend in ("fasttext", "langdetect"):
        lcfg = LanguageConfig(backend=backend)
        detector = make_detector(lcfg.backend, lcfg.min_probability, lcfg.workers)
        t = time.perf_counter()
        found = language(sample, lcfg, detector)
        res["lang"][backend] = {"seconds": time.perf_counter() - t, "langs": dict(found.group_by("lang").len().sort("len", descending=True).head(6).iter_rows())}

    semantic = next(s for s in p["stages"] if s["name"] == "semantic")
    frame = pl.read_parquet(run / "stages" / semantic["path"])
    t = time.perf_counter()
    pool = scoring_pool(frame, ScoreConfig(), SelectConfig())
    spread = time.perf_counter() - t
    rss0 = _rss_mb()
    t = time.perf_counter()
    scorer = LMScorer()
    load = time.perf_counter() - t
    rss1 = _rss_mb()
    picked = pool.sample(min(p["score_sample"], pool.height), seed=0)
    t = time.perf_counter()
    score_answers(picked, scorer, None)
    scored = time.perf_counter() - t
    import torch
    res["score"] = {"pool": pool.height, "spread_s": spread, "load_s": load, "rows": picked.height, "seconds": scored,
                    "model_rss_mb": rss1 - rss0, "rss_after_mb": _rss_mb(), "threads": torch.get_num_threads()}
    del frame, pool, scorer

    ledger = pl.read_parquet(run / "ledger.parquet")
    sizes = {c: ledger[c].estimated_size() for c in ledger.columns}
    ingest = pl.read_parquet(run / "stages" / next(s for s in p["stages"] if s["name"] == "ingest")["path"])
    res["memory"] = {"ledger_rows": ledger.height, "ledger_bytes": sum(sizes.values()), "ingest_bytes": ingest.estimated_size(),
                     "ingest_columns": len(ingest.columns), "ledger_columns": len(ledger.columns),
                     "top": sorted(sizes.items(), key=lambda kv: -kv[1])[:8],
                     "text_bytes": int(ledger.select(pl.col("instruction").str.len_bytes().sum() + pl.col("response").str.len_bytes().sum()).item())}
    return res


WORKERS = {"generate": worker_generate, "curate": worker_curate, "samples": worker_samples}


class Sampler(threading.Thread):
    """RSS of a process and of its whole tree, and the load average, every `every` seconds."""

    def __init__(self, pid: int, every: float):
        super().__init__(daemon=True)
        import psutil
        self.proc, self.every, self.samples, self.done = psutil.Process(pid), every, [], threading.Event()

    def run(self) -> None:
        import psutil
        while not self.done.is_set():
            try:
                main = self.proc.memory_info().rss
                tree = main
                for c in self.proc.children(recursive=True):
                    try:
                        tree += c.memory_info().rss
                    except psutil.Error:
                        pass
                self.samples.append((time.time(), main / 2**20, tree / 2**20, os.getloadavg()[0]))
            except psutil.Error:
                break
            self.done.wait(self.every)


def child(kind: str, params: dict, log: Path, env: dict | None = None, every: float = 1.0) -> tuple[dict, list, float]:
    """Run one worker in a fresh interpreter, its output to `log`; (its result, RSS samples, wall seconds)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as f:
        result_path = f.name
    cmd = [sys.executable, __file__, "--worker", kind, json.dumps(params), result_path]
    start = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        sampler = Sampler(proc.pid, every)
        sampler.start()
        rc = proc.wait()
    wall = time.time() - start
    sampler.done.set()
    sampler.join()
    if rc:
        sys.exit(f"{kind} worker failed (exit {rc}); the end of {log}:\n" + "\n".join(log.read_text().splitlines()[-30:]))
    result = json.loads(Path(result_path).read_text())
    os.unlink(result_path)
    return result, sampler.samples, wall


# ---------------------------------------------------------------- curate runs and their analysis

def run_config(execution: dict | None = None) -> dict:
    cfg = {"language": {"backend": "fasttext"}, "score": {"enabled": False}}
    return cfg | ({"execution": execution} if execution else {})


def curate_run(data: Path, out: Path, config: dict, env: dict, every: float) -> dict:
    home = Path(tempfile.mkdtemp(prefix="prefect-home-", dir="/tmp"))
    env = {"WINNOW_CACHE": str(out.parent / f"{out.name}-cache"), "PREFECT_HOME": str(home),
           "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)} | env
    load_before = os.getloadavg()
    result, samples, wall = child("curate", {"data": str(data), "out": str(out), "config": config},
                                  out.parent / f"{out.name}.log", env, every)
    shutil.rmtree(home, ignore_errors=True)
    result |= {"wall": wall, "samples": samples, "load_before": load_before, "windows": windows(result)}
    return result


def windows(result: dict) -> list[tuple[str, float, float]]:
    """(label, start, end) epoch windows: ingest (flow start to the first stage), each stage, gaps (shard split and join,
    stage reads), export (after the last stage)."""
    stages = [s for s in result["stages"] if s["name"] != "ingest" and not s["resumed"]]
    spans = sorted(((s["name"], s["started"], s["started"] + s["seconds"]) for s in stages), key=lambda w: w[1])
    out = [("ingest", result["flow_start"], spans[0][1])] if spans else []
    for k, span in enumerate(spans):
        if k and span[1] > out[-1][2] + 0.5:
            out.append(("(split/join, reads)", out[-1][2], span[1]))
        out.append(span)
    out.append(("export", max(s[2] for s in spans), result["flow_end"]))
    return out


def window_peaks(result: dict) -> dict[str, tuple[float, float]]:
    """Per window label: (peak RSS of the curate process, peak RSS of its tree), MB, over the samples inside it."""
    peaks: dict[str, tuple[float, float]] = {}
    for t, main, tree, _ in result["samples"]:
        hits = [w[0] for w in result["windows"] if w[1] <= t <= w[2]] or ["(startup/shutdown)"]
        for label in hits:
            a, b = peaks.get(label, (0.0, 0.0))
            peaks[label] = (max(a, main), max(b, tree))
    return peaks


def per_row_wall(stages: list[dict]) -> tuple[float, list[float]]:
    """Wall time of the per-row stages: per group of consecutive per-row stages, max(started + seconds) - min(started)."""
    groups, current = [], []
    for s in stages:
        if s["name"] == "ingest":
            continue
        if s["name"] in PER_ROW:
            current.append(s)
        elif current:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    walls = [max(s["started"] + s["seconds"] for s in g) - min(s["started"] for s in g) for g in groups]
    return sum(walls), walls


def print_run(label: str, r: dict) -> None:
    peaks = window_peaks(r)
    loads = [s[3] for s in r["samples"]]
    c = r["counts"]
    print(f"\n{label}: {c['input']:,} records -> {c['curated']:,} curated, {c['rejected']:,} rejected, "
          f"{c['quarantined']:,} quarantined; wall {r['wall']:.0f}s (flow {r['flow_end'] - r['flow_start']:.0f}s), "
          f"CPU {r['cpu_s']:.0f}s in the curate process ({r['cpu_s'] / r['wall']:.2f} cores); peak RSS {r['peak_mb'] / 1024:.2f} GiB "
          f"(tree {max(s[2] for s in r['samples']) / 1024:.2f} GiB); load avg 1-min before {r['load_before'][0]:.2f}, "
          f"during mean {np.mean(loads):.2f} max {max(loads):.2f}")
    print(f"  {'stage':<20}{'seconds':>9}{'alive in':>11}{'alive out':>11}{'rec/s':>10}{'peak RSS MiB':>14}{'tree MiB':>10}")
    alive_in = None
    for s in r["stages"]:
        rows = alive_in if alive_in is not None else c["input"]
        rate = rows / s["seconds"] if s["seconds"] > 0 else float("nan")
        pk = [f"{x:,.0f}" for x in peaks[s["name"]]] if s["name"] in peaks else ["-", "-"]  # no sample inside a short stage
        print(f"  {s['name']:<20}{s['seconds']:>9.1f}{rows:>11,}{s['alive']:>11,}{rate:>10,.0f}{pk[0]:>14}{pk[1]:>10}")
        alive_in = s["alive"]
    for other in ("(split/join, reads)", "export", "(startup/shutdown)"):
        if other in peaks:
            secs = sum(w[2] - w[1] for w in r["windows"] if w[0] == other) if other != "(startup/shutdown)" else \
                r["wall"] - (r["flow_end"] - r["flow_start"])
            print(f"  {other:<20}{secs:>9.1f}{'':>11}{'':>11}{'':>10}{peaks[other][0]:>14,.0f}{peaks[other][1]:>10,.0f}")
    flat = {f"{stage}.{reason}": v for stage, by in c["by_reason"].items() for reason, v in by.items()}
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(flat.items(), key=lambda kv: -kv[1])[:10])
    print(f"  drops: {reasons}")
    top = max(peaks.items(), key=lambda kv: kv[1][0])
    slow = max((s for s in r["stages"] if s["seconds"] > 0), key=lambda s: s["seconds"])
    print(f"  highest sampled RSS in: {top[0]} ({top[1][0]:,.0f} MiB; VmHWM {r['peak_mb']:,.0f} MiB); longest stage: "
          f"{slow['name']} ({slow['seconds']:.0f}s, {slow['seconds'] / r['wall']:.0%} of the wall time)", flush=True)


def per_row_peak(r: dict) -> float:
    peaks = window_peaks(r)
    return max(peaks.get(s, (0.0, 0.0))[0] for s in PER_ROW)


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_000_000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--file-rows", type=int, default=100_000)
    ap.add_argument("--exact", type=float, default=0.03, help="share of verbatim copies")
    ap.add_argument("--near", type=float, default=0.05, help="share of near copies")
    ap.add_argument("--keep", action="store_true", help="keep the generated data and run directories")
    ap.add_argument("--only-generate", action="store_true")
    ap.add_argument("--engines", action=argparse.BooleanOptionalAction, default=True, help="Dask 2 vs 1 workers on the per-row stages")
    ap.add_argument("--engine-rows", type=int, default=400_000)
    ap.add_argument("--engine-shard-rows", type=int, default=100_000,
                    help="rows per shard (execution.shard_rows, whose default this is); each shard stage is a Prefect task, "
                    "with about 0.2 s of orchestration around it")
    ap.add_argument("--engine-local", action=argparse.BooleanOptionalAction, default=True,
                    help="also the local runner (one process) on the same shards, for the engine's own overhead")
    ap.add_argument("--samples", action=argparse.BooleanOptionalAction, default=True, help="langdetect and scoring on samples of the first run")
    ap.add_argument("--lang-sample", type=int, default=20_000)
    ap.add_argument("--score-sample", type=int, default=128)
    ap.add_argument("--sample-every", type=float, default=1.0, help="seconds between RSS samples")
    ap.add_argument("--workdir", help="where data and runs go (default: a new folder in /tmp)")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, params, out = args.worker
        Path(out).write_text(json.dumps(WORKERS[kind](json.loads(params))))
        return
    if not (DATA / "alpaca" / "alpaca_data.json").is_file():
        sys.exit(f"needs {DATA}")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="winnow-scale-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GiB:.0f} GiB; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; work in {work}", flush=True)
    runs, gens = {}, {}

    def gen(n: int, name: str) -> Path:
        out = work / name
        g, _, wall = child("generate", {"n": n, "seed": args.seed, "out": str(out), "file_rows": args.file_rows,
                                        "exact": args.exact, "near": args.near}, work / f"{name}.log", {"PYTHONPATH": str(ROOT)})
        gens[name] = g
        mix = g["mix"]
        top_langs = ", ".join(f"{k} {v / g['rows']:.1%}" for k, v in list(mix["lang"].items())[:6])
        print(f"\ngenerated {g['rows']:,} rows in {g['files']} files ({g['bytes'] / 2**20:,.0f} MiB) in {g['seconds']:.1f}s "
              f"({g['rows'] / g['seconds']:,.0f} rows/s; process {wall:.1f}s, peak RSS {g['peak_mb']:,.0f} MiB); "
              f"kinds {mix['kind']}; languages {top_langs} ({len(mix['lang'])} in all); sources {mix['src']}", flush=True)
        return out

    for n in args.sizes:
        data = gen(n, f"data-{n}")
        if args.only_generate:
            continue
        out = work / f"run-{n}"
        r = curate_run(data, out, run_config(), {}, args.sample_every)
        runs[n] = r
        print_run(f"curate {n:,}", r)
        if args.samples and n == args.sizes[0]:
            s, samples, _ = child("samples", {"run": str(out), "stages": r["stages"], "lang_sample": args.lang_sample,
                                              "score_sample": args.score_sample}, work / "samples.log",
                                  {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
            runs["samples"] = (n, s, max(x[1] for x in samples))
            print_samples(n, s, r)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(work / f"run-{n}-cache", ignore_errors=True)
            shutil.rmtree(data, ignore_errors=True)

    if args.engines and not args.only_generate:
        data = gen(args.engine_rows, f"data-engines-{args.engine_rows}")
        engines = [("dask, 1 worker", {"runner": "dask", "workers": 1}), ("dask, 2 workers", {"runner": "dask", "workers": 2})]
        if args.engine_local:
            engines.append(("local", {"runner": "local"}))
        for label, execution in engines:
            execution["shard_rows"] = args.engine_shard_rows
            out = work / f"run-engines-{execution['runner']}-{execution.get('workers', 1)}"
            r = curate_run(data, out, run_config(execution), PINNED, args.sample_every)
            runs[label] = r
            print_run(f"curate {args.engine_rows:,}, {label}, shards of {args.engine_shard_rows:,}, threads pinned to 1", r)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(work / f"{out.name}-cache", ignore_errors=True)
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)

    if not args.only_generate:
        summary(args, runs, gens)
    if args.keep:
        print(f"kept: {work}")
    elif not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


def print_samples(n: int, s: dict, r: dict) -> None:
    lang, score = s["lang"], s["score"]
    scale = lang["run_distinct"] / lang["sample_distinct"]
    measured = next(x["seconds"] for x in r["stages"] if x["name"] == "language")
    print(f"\nlanguage on a {lang['sample_rows']:,}-row sample of the language stage's input ({lang['sample_distinct']:,} distinct "
          f"judgeable texts; the {n:,} run asked {lang['run_distinct']:,} over {lang['shards']} shards, x{scale:.1f}):")
    for backend in ("fasttext", "langdetect"):
        t = lang[backend]["seconds"]
        print(f"  {backend:<11}{t:8.1f}s  {lang['sample_distinct'] / t:8,.0f} texts/s  -> {t * scale:7.0f}s at {n:,}   langs {lang[backend]['langs']}")
    print(f"  measured fasttext language stage in the run: {measured:.0f}s; langdetect adds about "
          f"{(lang['langdetect']['seconds'] - lang['fasttext']['seconds']) * scale:.0f}s at {n:,}")
    per = score["seconds"] / score["rows"]
    print(f"scoring (SmolLM2-135M, {score['threads']} torch threads) on {score['rows']} rows of the run's scoring pool of {score['pool']:,} "
          f"(pool spread {score['spread_s']:.1f}s, in the run already): {score['rows'] / score['seconds']:.2f} rows/s, model load "
          f"{score['load_s']:.1f}s (+{score['model_rss_mb']:,.0f} MiB RSS) -> adds about {score['load_s'] + per * score['pool']:.0f}s "
          f"for the pool, at any N (the pool is select.pool_factor x score.pool_factor x budget, not a share of N)")
    m = s["memory"]
    print(f"ledger in memory (polars estimated_size) at {m['ledger_rows']:,} rows: {m['ledger_bytes'] / GiB:.2f} GiB, "
          f"{m['ledger_columns']} columns (ingest output {m['ingest_bytes'] / GiB:.2f} GiB, {m['ingest_columns']} columns; "
          f"instruction + response text {m['text_bytes'] / GiB:.2f} GiB); largest columns: "
          + ", ".join(f"{k} {v / 2**20:,.0f} MiB" for k, v in m["top"]), flush=True)


def summary(args, runs: dict, gens: dict) -> None:
    sizes = [n for n in args.sizes if n in runs]
    print("\n== summary ==")
    print("generation: " + ", ".join(f"{g['rows']:,} rows {g['seconds']:.0f}s" for g in gens.values()))
    if sizes:
        names = [s["name"] for s in runs[sizes[0]]["stages"]]
        print(f"{'stage':<12}" + "".join(f"{f'{n / 1e6:g}M s':>10}{'rec/s':>9}" for n in sizes))
        for name in names:
            line = f"{name:<12}"
            for n in sizes:
                stages = runs[n]["stages"]
                k = next(i for i, s in enumerate(stages) if s["name"] == name)
                rows = stages[k - 1]["alive"] if k else runs[n]["counts"]["input"]
                sec = stages[k]["seconds"]
                line += f"{sec:>10.1f}{rows / sec if sec else float('nan'):>9,.0f}"
            print(line)
        for key, fmt in (("wall", lambda r: f"{r['wall'] / 60:.1f} min"), ("peak RSS", lambda r: f"{r['peak_mb'] / 1024:.2f} GiB"),
                         ("per-row RSS", lambda r: f"{per_row_peak(r) / 1024:.2f} GiB"),
                         ("per-row s", lambda r: f"{per_row_wall(r['stages'])[0]:.0f}s")):
            print(f"{key:<12}" + "".join(f"{fmt(runs[n]):>19}" for n in sizes))
        first = sizes[0]
        print("target 1M in <= 15 min on 2 cores: " + "; ".join(
            f"{n:,}: {runs[n]['wall'] / 60:.1f} min" + (f" ({'met' if runs[n]['wall'] <= 900 else 'not met'})" if n == 1_000_000 else "")
            for n in sizes))
        print("target peak RSS <= 3 GB: " + "; ".join(f"{n:,}: {runs[n]['peak_mb'] * 2**20 / 1e9:.2f} GB "
                                                      f"({'met' if runs[n]['peak_mb'] * 2**20 <= 3e9 else 'not met'})" for n in sizes))
        if len(sizes) > 1:
            last = sizes[-1]
            ratio = runs[last]["peak_mb"] / runs[first]["peak_mb"]
            per_row = per_row_peak(runs[last]) / per_row_peak(runs[first])
            print(f"peak RSS {last / 1e6:g}M / {first / 1e6:g}M: {ratio:.2f}x whole run; per-row stages {per_row:.2f}x "
                  f"(target <= 1.3x: {'met' if per_row <= 1.3 else 'not met'})")
    if "dask, 1 worker" in runs and "dask, 2 workers" in runs:
        one, two = (per_row_wall(runs[k]["stages"]) for k in ("dask, 1 worker", "dask, 2 workers"))
        speed = one[0] / two[0]
        print(f"Dask on {args.engine_rows:,} rows, shards of {args.engine_shard_rows:,}, threads pinned: per-row stages "
              f"{one[0]:.1f}s with 1 worker ({' + '.join(f'{w:.1f}' for w in one[1])}), {two[0]:.1f}s with 2 "
              f"({' + '.join(f'{w:.1f}' for w in two[1])}): {speed:.2f}x (target >= 1.7x: {'met' if speed >= 1.7 else 'not met'}); "
              f"whole run {runs['dask, 1 worker']['wall']:.0f}s vs {runs['dask, 2 workers']['wall']:.0f}s")
        if "local" in runs:
            local = per_row_wall(runs["local"]["stages"])
            print(f"  local runner, same shards and threads: per-row stages {local[0]:.1f}s "
                  f"({' + '.join(f'{w:.1f}' for w in local[1])}): 2 Dask workers {local[0] / two[0]:.2f}x it, 1 worker "
                  f"{local[0] / one[0]:.2f}x it; whole run {runs['local']['wall']:.0f}s")
    if "samples" in runs:
        n, s, _ = runs["samples"]
        lang, score = s["lang"], s["score"]
        scale = lang["run_distinct"] / lang["sample_distinct"]
        print(f"langdetect instead of fasttext adds about {(lang['langdetect']['seconds'] - lang['fasttext']['seconds']) * scale / 60:.0f} min at {n:,}; "
              f"scoring adds about {(score['load_s'] + score['seconds'] / score['rows'] * score['pool']) / 60:.0f} min ({score['pool']:,} pool rows)")
    print(f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
