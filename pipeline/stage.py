"""The stage contract: every curation stage is one `Stage`, declared the same way and run by
pipeline.runner the same way.

A stage is a pure function `(frame, cfg, deps) -> frame` over the ledger-so-far. It names the
columns it needs and the columns it adds (typed and documented: the column reference is built
from these), the config sections that key its output, and whether each row's result depends on
that row alone (per-row stages can run shard by shard). Drops go through `pipeline.mark` with the
stage's `StageName`, so every `drop_stage` value comes from one enum.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from pipeline.progress import Progress

if TYPE_CHECKING:
    from pipeline.dedup.shared import SharedIndex
    from pipeline.stages.embed import Embedder
    from pipeline.stages.language_detect import LanguageDetector
    from pipeline.stages.score import Scorer
    from schemas.config import CurationConfig

Columns = dict[str, tuple[pl.DataType, str]]  # column -> (dtype, meaning)
LOG = logging.getLogger("winnow")


class StageName(StrEnum):
    """Every stage, in run order; `drop_stage` holds one of these."""

    INGEST = "ingest"
    HEURISTICS = "heuristics"
    LANGUAGE = "language"
    DECONTAM = "decontam"
    PII = "pii"
    MINHASH = "minhash"  # exact keys and LSH bucket keys, per row
    DEDUP = "dedup"
    CATEGORY = "category"  # keyword rules (and the source's own labels)
    EMBED = "embed"  # vectors of the candidate pool
    CENTROID = "centroid"  # 'other' rows take the nearest category centroid
    SEMANTIC = "semantic"  # semantic dedup within the pool
    SCORE = "score"
    SELECT = "select"


@dataclass(frozen=True)
class Stage:
    name: StageName
    run: Callable[[pl.DataFrame, CurationConfig, Deps], pl.DataFrame]
    sections: tuple[str, ...]  # config sections that key its output
    adds: Columns  # columns it adds, with dtype and meaning
    per_row: bool  # True: each row's result depends on that row alone, so the stage can run per shard
    files: Callable[[CurationConfig], list[str]] = lambda cfg: []  # side inputs whose content keys the output
    # The columns the stage reads, checked present on entry (with the ledger's own, schemas.ledger.LEDGER_COLUMNS),
    # and the only ones it is given besides id and the drop columns; what it returns is merged back into the full
    # rows. Whole-set stages name theirs, so a million rows' texts and scores never sit in a step that does not
    # read them (compact tables). None: every column.
    reads: tuple[str, ...] | None = None


def _not_given(what: str) -> Callable[[], object]:
    def missing():
        raise RuntimeError(f"this stage needs a {what}, and none was given (pipeline.runner.preflight gives one)")
    return missing


@dataclass
class Deps:
    """What stages use beside their frame and config, typed. `pipeline.runner.preflight` builds it
    once per process and config: the eval sets and earlier indexes are read there and the shared
    index is connected (a bad one fails before any work), the models load on first use. Tests pass
    data and fake loaders. `run_dir` is set per stage by `pipeline.runner.run_stage`, as is `stage_input`."""

    cfg: CurationConfig
    eval_prompts: pl.DataFrame | None = None
    previous_index: pl.DataFrame | None = None
    shared_index: SharedIndex | None = None  # dedup.shared_index, connected; None when off
    run_dir: Path | None = None  # the run being curated: who this run is in the shared index
    stage_input: Path | None = None  # the file the stage's frame was read from: its other columns, read by id
    embedding_cache: Path | None = None
    score_cache: Path | None = None
    log: logging.Logger = LOG
    load_embedder: Callable[[], Embedder] = field(default_factory=lambda: _not_given("sentence embedder"))
    load_scorer: Callable[[], Scorer] = field(default_factory=lambda: _not_given("answer scorer"))
    load_detector: Callable[[], LanguageDetector] = field(default_factory=lambda: _not_given("language detector"))

    @cached_property
    def embedder(self) -> Embedder:
        return self.load_embedder()

    @cached_property
    def scorer(self) -> Scorer:
        return self.load_scorer()

    @cached_property
    def detector(self) -> LanguageDetector:
        return self.load_detector()

    def progress(self, stage: str) -> Progress:
        """A counter for a long loop of `stage`: log lines every 15 s, and the CLI's display when there is one."""
        return Progress(stage, self.log)
