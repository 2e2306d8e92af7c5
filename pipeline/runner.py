"""Runs stages the one way: preflight, keys, resume, column checks, atomic outputs, cleanup.

Every output lives under RUN_DIR/stages/<name>-<key>.parquet. A stage's key chains its input's
key, its config sections, the content of its side files and the source of its own code (its
module and every winnow module that module imports, so editing the report reruns nothing), so a
rerun reuses every stage whose key is unchanged and reruns the first changed one and those after.
Ingest is mapped over the input files (one part per file, keyed by the file's hash), then the
parts are combined, so a changed file re-reads that file only.
"""

import ast
import hashlib
import importlib.util
import json
import logging
import multiprocessing
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from pathlib import Path

import polars as pl

from pipeline import progress, runinfo
from pipeline.cache import cache_root
from pipeline.io import batches, file_sha256, write_batches, write_merged, write_parquet
from pipeline.mark import ALIVE
from pipeline.normalize import copy_numbers
from pipeline.plan import STAGES
from pipeline.stage import Columns, Deps, Stage
from pipeline.stages import ingest
from pipeline.stages.decontam import load_eval_prompts
from pipeline.stages.dedup import load_previous, open_shared_index
from pipeline.stages.embed import load_embedder
from pipeline.stages.language_detect import make_detector
from pipeline.stages.score import load_scorer
from schemas.config import ConfigError, CurationConfig, EmbedConfig, ScoreConfig
from schemas.ledger import LEDGER_COLUMNS

STAGE_DIR = "stages"
KEY_COLUMNS = ("id", "drop_stage", "drop_reason", "drop_detail")  # every stage gets these: the rows and their fate
MODEL_SETTINGS = {"model", "device", "dtype", "max_prompt_tokens", "max_response_tokens", "batch_tokens", "threads"}


class StageContractError(RuntimeError):
    """A stage got or gave a frame without the columns it declares: a bug in winnow, not in the data."""


@dataclass(frozen=True)
class StageResult:
    name: str
    path: str
    key: str
    seconds: float  # of work (over shards: from the first shard's start to the last one's end)
    resumed: bool
    alive: int
    started: float = 0.0  # epoch seconds when the work began


@dataclass(frozen=True)
class IngestResult:
    """The combined ingest: the first ledger, the quarantine and what was read per file."""

    stage: StageResult
    quarantine: str
    read: str
    parts: list[tuple[str, float]]  # (key, seconds) of each file's part, in input order


def _project_imports(path: Path) -> set[str]:
    """Modules of winnow (pipeline.*, schemas.*) a source file imports, at any depth but type-checking blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in ("pipeline", "schemas")}


@cache
def code_files(module: str) -> tuple[str, ...]:
    """Source files of `module` and of every winnow module it imports, transitively, sorted."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # `from pipeline.x import name`: the name is not a module
            spec = None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        seen[name] = Path(spec.origin)
        todo += sorted(_project_imports(seen[name]) - set(seen))
    return tuple(sorted(str(p) for p in seen.values()))


@cache
def code_key(module: str) -> str:
    """The winnow version and a hash of `code_files(module)`: editing a stage's code reruns it."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in code_files(module):
        digest.update(str(Path(name).relative_to(root)).encode() + b"\0" + Path(name).read_bytes())
    return f"{runinfo.version()}+{digest.hexdigest()[:12]}"


def stage_key(previous_key: str, name: str, sections: tuple[str, ...], cfg: CurationConfig, module: str,
              files: list[str] = ()) -> str:
    """Cache key of a stage's output: its input's key, its config sections, its side files, its code."""
    values = {s: getattr(cfg, s).model_dump(mode="json") for s in sections}
    payload = json.dumps([previous_key, name, values, [file_sha256(f) for f in files], code_key(module)], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def stage_path(run_dir: str | Path, name: str, key: str) -> Path:
    return Path(run_dir, STAGE_DIR, f"{name}-{key}.parquet")


@lru_cache(maxsize=2)
def _embedder(cfg_json: str):
    return load_embedder(EmbedConfig.model_validate_json(cfg_json))


@lru_cache(maxsize=1)
def _scorer(cfg_json: str):
    """Keyed by the model's settings only: other weights or pool sizes reuse the loaded model."""
    return load_scorer(ScoreConfig.model_validate_json(cfg_json))


@lru_cache(maxsize=2)
def _detector(backend: str, min_probability: float | None, workers: int | None):
    if multiprocessing.current_process().daemon:  # a Dask worker may not fork; the cluster is the parallelism
        workers = 1
    return make_detector(backend, min_probability, workers)


_DEPS: dict[str, Deps] = {}


def preflight(cfg: CurationConfig) -> Deps:
    """Check what the config names and load the data stages share, once per process and config:
    a missing or unreadable eval set or earlier run, or a shared index that does not answer, is a
    ConfigError here, before any work starts."""
    files = [f for stage in STAGES for f in stage.files(cfg)]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise ConfigError(f"files named in the config do not exist: {', '.join(missing)}")
    caches = cache_root("embeddings"), cache_root("scores")
    key = json.dumps([cfg.model_dump_json(), [file_sha256(f) for f in files], [str(c) for c in caches]])
    if key not in _DEPS:  # keyed by the side files' content too: an edited eval set is read again
        while len(_DEPS) >= 4:  # a long-lived worker keeps the latest few
            _DEPS.pop(next(iter(_DEPS)))
        try:
            prompts = load_eval_prompts(cfg.decontam.eval_sets)
            previous = load_previous(cfg.dedup.previous_runs)
            shared = open_shared_index(cfg.dedup)
        except (ValueError, OSError, pl.exceptions.PolarsError) as err:
            raise ConfigError(str(err).splitlines()[0]) from None
        lang = cfg.language
        _DEPS[key] = Deps(cfg, eval_prompts=prompts, previous_index=previous, shared_index=shared,
                          embedding_cache=caches[0], score_cache=caches[1],
                          load_embedder=lambda: _embedder(cfg.embed.model_dump_json()),
                          load_scorer=lambda: _scorer(cfg.score.model_dump_json(include=MODEL_SETTINGS)),
                          load_detector=lambda: _detector(lang.backend, lang.min_probability, lang.workers))
    elif _DEPS[key].shared_index is not None:
        _DEPS[key].shared_index.check()  # a long-lived worker's server may have gone since
    return _DEPS[key]


def _alive(frame: pl.DataFrame) -> int:
    return int(frame.select(ALIVE.sum()).item())


def check_columns(schema: pl.Schema, stage: Stage, adds: Columns | None = None) -> None:
    """Raise StageContractError when a schema lacks a column the stage reads, or (after it ran) one it adds."""
    if adds is None:
        wanted = {c: None for c in (*LEDGER_COLUMNS, *(stage.reads or ()))}
        when = "needs"
    else:
        wanted = {c: dtype for c, (dtype, _) in adds.items()}
        when = "declares"
    missing = [c for c in wanted if c not in schema]
    wrong = [f"{c} ({schema[c]}, not {d})" for c, d in wanted.items() if d is not None and c in schema and schema[c] != d]
    if missing or wrong:
        raise StageContractError(f"stage {stage.name} {when} columns it did not get: {', '.join(missing + wrong)}")


def stage_input(stage: Stage, path: str | Path) -> pl.DataFrame:
    """What a stage is given: every column, or (`stage.reads`) only those, with id and the drop columns."""
    schema = pl.read_parquet_schema(path)
    check_columns(schema, stage)
    if stage.reads is None:
        return pl.read_parquet(path)
    return pl.read_parquet(path, columns=[c for c in schema if c in {*KEY_COLUMNS, *stage.reads}])


def run_stage(stage: Stage, previous: StageResult, cfg: CurationConfig, run_dir: str | Path, deps: Deps) -> StageResult:
    """Run one stage on the previous stage's output, or reuse its finished output."""
    log = deps.log
    key = stage_key(previous.key, stage.name, stage.sections, cfg, stage.run.__module__, stage.files(cfg))
    out = stage_path(run_dir, stage.name, key)
    if out.exists():
        log.info("%s: finished in an earlier run, reusing %s", stage.name, out.name)
        return StageResult(stage.name, str(out), key, 0.0, True, _alive(pl.read_parquet(out, columns=["drop_reason"])))
    progress.started(stage.name, log)
    start, began = time.perf_counter(), time.time()
    frame = stage_input(stage, previous.path)
    ids, alive_in = frame["id"], _alive(frame)
    frame = stage.run(frame, cfg, replace(deps, run_dir=Path(run_dir), stage_input=Path(previous.path)))
    check_columns(frame.schema, stage, stage.adds)
    if frame.height != ids.len():
        raise StageContractError(f"stage {stage.name} returned {frame.height} rows for {ids.len()}: stages mark rows, never drop them")
    if stage.reads is None:
        write_parquet(frame, out)
    elif frame["id"].equals(ids):
        write_merged(previous.path, frame, out)
    else:
        raise StageContractError(f"stage {stage.name} returned its rows in another order: they are merged back by position")
    seconds = time.perf_counter() - start
    result = StageResult(stage.name, str(out), key, seconds, False, _alive(frame), began)
    rate = f", {alive_in / seconds:,.0f} rows/s" if seconds > 0 else ""
    progress.finished(stage.name, f"{result.alive:,} of {alive_in:,} alive rows kept in {seconds:.1f}s{rate}", log)
    return result


def ingest_part(path: str, sha256: str, cfg: CurationConfig, run_dir: str | Path, log: logging.Logger) -> tuple[str, float]:
    """Read and validate one input file into RUN_DIR/stages/source-<key>*.parquet, its rows written chunk by chunk
    (`execution.ingest_chunk` records at a time); (key, seconds spent)."""
    key = stage_key(f"{path}:{sha256}", "source", ("ingest",), cfg, ingest.__name__)
    rows, quarantine, read = (stage_path(run_dir, "source", f"{key}{part}") for part in ("", "-quarantine", "-read"))
    if rows.exists() and quarantine.exists() and read.exists():
        log.info("ingest: %s read in an earlier run", path)
        return key, 0.0
    start = time.perf_counter()
    frames, tally = ingest.ingest_file(Path(path), cfg.ingest, cfg.execution.ingest_chunk)
    write_batches(frames, rows)
    q = tally.quarantine()
    write_parquet(q, quarantine)
    write_parquet(tally.read(), read)
    seconds = time.perf_counter() - start
    log.info("ingest: %s: %d rows, %d quarantine rows in %.1fs", path, tally.counts["ledger_rows"], q.height, seconds)
    return key, seconds


def _first_ledger(paths: list[Path], copies: pl.Series) -> Iterator[pl.DataFrame]:
    """The parts' rows, batch by batch, as the first ledger: `copies` (of every row, in order) is all they share."""
    offset = 0
    for path in paths:
        for part in batches(path):
            yield ingest.first_ledger(part, copies.slice(offset, part.height))
            offset += part.height


def combine_parts(parts: list[tuple[str, float]], run_dir: str | Path, log: logging.Logger) -> IngestResult:
    """The parts, in input order, as the first ledger (ids assigned across files), quarantine and read counts. The
    ledger is streamed: only the content hashes of every row are held, to number exact copies."""
    keys = [k for k, _ in parts]
    seconds = sum(s for _, s in parts)
    key = hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]
    out, quarantine, read = (stage_path(run_dir, name, key) for name in ("ingest", "quarantine", "read"))
    resumed = out.exists() and quarantine.exists() and read.exists()
    if resumed:
        log.info("ingest: finished in an earlier run, reusing %s", out.name)
    else:
        progress.started("ingest", log)
        start = time.perf_counter()
        sources = [stage_path(run_dir, "source", k) for k in keys]
        q = pl.concat([pl.read_parquet(stage_path(run_dir, "source", f"{k}-quarantine")) for k in keys])
        write_parquet(pl.concat([pl.read_parquet(stage_path(run_dir, "source", f"{k}-read")) for k in keys]), read)
        write_parquet(q, quarantine)
        hashes = pl.concat([pl.read_parquet(p, columns=["content_hash"]) for p in sources])["content_hash"]
        write_batches(_first_ledger(sources, copy_numbers(hashes)), out)
        seconds += time.perf_counter() - start
        progress.finished("ingest", f"{hashes.len():,} records, {q.height:,} quarantine rows from {len(keys)} files "
                          f"in {seconds:.1f}s", log)
    alive = _alive(pl.read_parquet(out, columns=["drop_reason"]))
    return IngestResult(StageResult("ingest", str(out), key, seconds, resumed, alive), str(quarantine), str(read), parts)


def groups(stages: list[Stage]) -> list[list[int]]:
    """Stage indexes in run order, consecutive per-row stages together: each group of those runs shard by shard."""
    out: list[list[int]] = []
    for index, stage in enumerate(stages):
        if out and stage.per_row and stages[out[-1][-1]].per_row:
            out[-1].append(index)
        else:
            out.append([index])
    return out


def split(previous: StageResult, run_dir: str | Path, rows: int) -> list[StageResult]:
    """The previous stage's output as shards of `rows` rows, keyed by its key and their bounds (itself when it fits)."""
    total = pl.scan_parquet(previous.path).select(pl.len()).collect().item()
    if total <= rows:
        return [previous]
    shards = []
    for start in range(0, total, rows):
        key = hashlib.sha256(json.dumps([previous.key, start, rows]).encode()).hexdigest()[:16]
        out = stage_path(run_dir, "shard", key)
        if not out.exists():
            write_parquet(pl.scan_parquet(previous.path).slice(start, rows).collect(), out)
        shards.append(StageResult("shard", str(out), key, 0.0, False, _alive(pl.read_parquet(out, columns=["drop_reason"]))))
    return shards


def summary(results: list[StageResult]) -> StageResult:
    """One stage's results over its shards, as the manifest lists it (the first shard's file, the wall time
    from the first shard's start to the last one's end: shards run side by side on a cluster)."""
    first, ran = results[0], [r for r in results if not r.resumed]
    start = min((r.started for r in ran), default=0.0)
    wall = max((r.started + r.seconds for r in ran), default=0.0) - start
    return StageResult(first.name, first.path, first.key, wall, not ran, sum(r.alive for r in results), start)


def join(results: list[StageResult], run_dir: str | Path) -> StageResult:
    """The shards' outputs of one stage concatenated in order: the same rows, in the same order, as one run."""
    if len(results) == 1:
        return results[0]
    key = hashlib.sha256(json.dumps([r.key for r in results]).encode()).hexdigest()[:16]
    out = stage_path(run_dir, results[0].name, key)
    if not out.exists():
        write_batches((part for r in results for part in batches(r.path)), out)
    return replace(summary(results), path=str(out), key=key)


def cleanup(run_dir: str | Path, keys: list[str]) -> list[Path]:
    """Delete stage outputs of RUN_DIR that no key of this run names (stale configs, older code)."""
    named = ((p, re.search(r"-([0-9a-f]{16})(?=[-.])", p.name)) for p in sorted(Path(run_dir, STAGE_DIR).glob("*.parquet")))
    stale = [p for p, key in named if key and key[1] not in set(keys)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def with_log(deps: Deps, log: logging.Logger) -> Deps:
    """The same dependencies, logging to `log` (each Prefect task has its own run logger)."""
    return replace(deps, log=log)

