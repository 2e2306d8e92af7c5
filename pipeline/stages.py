"""The ordered stages of a curate run and the resources they share.

Each step names the config sections, and the side files (eval sets, earlier runs' dedup indexes),
that key its cached output, so changing a threshold or an eval file reruns that stage and the
ones after it, and nothing before.
"""

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import polars as pl

from pipeline.cache import cache_root
from pipeline.category import categorize
from pipeline.decontam import decontam, load_eval_prompts
from pipeline.dedup import INDEX_FILE, dedup, load_previous
from pipeline.diversity import random_baseline
from pipeline.embed import embed, load_embedder
from pipeline.heuristics import heuristics
from pipeline.io import file_sha256, write_parquet
from pipeline.language import language
from pipeline.pii import pii
from pipeline.score import LMScorer, score
from pipeline.select import candidates, select
from pipeline.semantic import semantic_dedup
from schemas.config import ConfigError, CurationConfig, EmbedConfig, ScoreConfig

EMBEDDINGS = "embeddings"  # side output of the select step: every vector selection and the report use


@lru_cache(maxsize=2)
def _embedder(cfg: EmbedConfig):
    return load_embedder(cfg)


def _scorer(cfg: ScoreConfig) -> LMScorer:
    """The scorer a config names, loaded once per process (weights only change the ranking, not the model)."""
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    return _load_scorer(cfg.model, cfg.device, cfg.dtype, cfg.max_prompt_tokens, cfg.max_response_tokens, cfg.batch_tokens)


@lru_cache(maxsize=1)
def _load_scorer(*args) -> LMScorer:
    return LMScorer(*args)


@dataclass
class Context:
    """What a step may use beside its input frame; models load once, on first use; tests pass fakes in `overrides`."""

    cfg: CurationConfig
    out: Path  # the step's output file; side outputs go beside it
    overrides: dict = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("winnow"))  # the flow passes Prefect's run logger

    def get(self, name: str, load: Callable[[], object]):
        if name not in self.overrides:
            self.overrides[name] = load()
        return self.overrides[name]

    def side(self, name: str) -> Path:
        return side_path(self.out, name)


def side_path(step_output: str | Path, name: str) -> Path:
    """Where a step writes its side output `name`: RUN_DIR/stages/<name>-<step key>.parquet."""
    out = Path(step_output)
    return out.with_name(f"{name}-{out.stem.rsplit('-', 1)[-1]}.parquet")


@dataclass(frozen=True)
class Step:
    name: str
    sections: tuple[str, ...]
    run: Callable[[pl.DataFrame, Context], pl.DataFrame]
    files: Callable[[CurationConfig], list[str]] = lambda cfg: []  # side inputs whose content keys the output
    marks: tuple[str, ...] = ()  # the drop_stage values it sets, in order, when not only its name


def _decontam(frame: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    prompts = ctx.get("eval_prompts", lambda: load_eval_prompts(ctx.cfg.decontam.eval_sets))
    return decontam(frame, ctx.cfg.decontam, prompts)


def _dedup(frame: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    return dedup(frame, ctx.cfg.dedup, load_previous(ctx.cfg.dedup.previous_runs))


def _embed(frame: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """Embeddings of the candidate pool (an `embedding` column), centroid categories, semantic dedup within it."""
    cfg = ctx.cfg
    embedder = ctx.get("embedder", lambda: _embedder(cfg.embed))
    vectors = embed(candidates(frame, cfg.select), cfg.embed, embedder, ctx.get("embedding_cache", lambda: cache_root("embeddings")))
    frame = semantic_dedup(categorize(frame, cfg.category, vectors), vectors, cfg.semantic)
    return frame.join(vectors, on="id", how="left", maintain_order="left")


def _score(frame: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    cfg = ctx.cfg
    scoring = cfg.score.enabled and cfg.select.budget is not None
    scorer = ctx.get("scorer", lambda: _scorer(cfg.score)) if scoring else None
    return score(frame, cfg.score, cfg.select, scorer, ctx.get("score_cache", lambda: cache_root("scores")), ctx.log)


def _select(frame: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """The choice among the scored rows; the vectors leave the frame for the side file.

    The random sample that diversity is measured against is embedded here too, so the side file
    holds every vector the manifest and the report need."""
    cfg = ctx.cfg
    vectors = frame.filter(pl.col("embedding").is_not_null()).select("id", "embedding")
    frame = select(frame.drop("embedding"), vectors.filter(pl.col("id").is_in(
        frame.filter(pl.col("selection_score").is_not_null())["id"].implode())), cfg.select)
    baseline = random_baseline(frame, cfg.select.seed).join(vectors.select("id"), on="id", how="anti")
    if baseline.height and cfg.select.budget is not None:  # diversity is measured only against a budget
        embedder = ctx.get("embedder", lambda: _embedder(cfg.embed))
        cache = ctx.get("embedding_cache", lambda: cache_root("embeddings"))
        vectors = pl.concat([vectors, embed(baseline, cfg.embed, embedder, cache)]).sort("id")
    write_parquet(vectors, ctx.side(EMBEDDINGS))
    return frame


STEPS: list[Step] = [
    Step("heuristics", ("heuristics",), lambda f, ctx: heuristics(f, ctx.cfg.heuristics)),
    Step("language", ("language",), lambda f, ctx: language(f, ctx.cfg.language)),
    Step("decontam", ("decontam",), _decontam, lambda cfg: list(cfg.decontam.eval_sets.values())),
    Step("pii", ("pii",), lambda f, ctx: pii(f, ctx.cfg.pii)),
    Step("dedup", ("dedup",), _dedup, lambda cfg: [str(Path(r) / INDEX_FILE) for r in cfg.dedup.previous_runs]),
    Step("category", ("category",), lambda f, ctx: categorize(f, ctx.cfg.category)),
    Step("embed", ("select", "embed", "category", "semantic"), _embed, marks=("semantic",)),
    Step("score", ("score", "select"), _score),
    Step("select", ("select",), _select),
]


DROP_STAGES = {step.name: step.marks or (step.name,) for step in STEPS}


def step_key(previous_key: str, name: str, sections: tuple[str, ...], cfg: CurationConfig, version: str,
             files: list[str] = ()) -> str:
    """Cache key of a step's output: its input's key, its config sections, its side files, the code version."""
    values = {s: getattr(cfg, s).model_dump(mode="json") for s in sections}
    payload = json.dumps([previous_key, name, values, [file_sha256(f) for f in files], version], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def check_side_files(cfg: CurationConfig) -> None:
    """Eval sets and earlier runs' dedup indexes the config names must exist: checked before any work starts."""
    missing = [f for step in STEPS for f in step.files(cfg) if not Path(f).is_file()]
    if missing:
        raise ConfigError(f"files named in the config do not exist: {', '.join(missing)}")
