"""LIMA-style selection."""

from typing import Annotated, Literal

from pydantic import Field, field_validator

from schemas.config.base import Section
from schemas.config.language import LanguageConfig


class SelectConfig(Section):
    """LIMA-style selection of the curated set."""

    budget: int | None = Field(1000, ge=1, description="Size of the curated set; None keeps every surviving record.")
    seed: int = Field(0, description="Seed of the order among rows that tie on quality (and of the random baseline).")
    method: Literal["quality_coverage", "deita", "kcenter"] = Field(
        "quality_coverage",
        description="'quality_coverage': lazy-greedy facility location over the pool's embedding similarities plus a "
        "quality term (QDIT, Bukharin et al. 2023): each pick maximises (1 - quality_weight) x the coverage it adds "
        "+ quality_weight x its score. 'deita': best quality step first and, within a step, the row least similar to the picks so far "
        "first; a row is accepted only if it is not too similar to any pick (max_similarity). 'kcenter': greedy "
        "k-center over all candidates (each pick the one farthest from every pick so far); quality only chooses "
        "the candidate pool (pool_factor) and the floor.",
    )
    quality_weight: float = Field(
        0.5, ge=0, le=1, description="quality_coverage: weight of quality against coverage (0: pure facility location, "
        "1: best score first). Coverage is the mean over the pool of each row's similarity to its nearest pick; quality "
        "the mean score of the picks, so both run from 0 to 1.")
    max_similarity: float | None = Field(
        0.6, gt=0, le=1,
        description="deita: a candidate is accepted only if its cosine SIMILARITY (1 = same meaning) to every row "
        "already accepted is below this; None: no limit. On MiniLM prompt embeddings 0.9+ is a paraphrase, 0.6-0.7 "
        "the same task on the same topic ('Summarize the story of Cinderella' / '... of The Little Prince', 0.63), "
        "0.5 a related topic. A lower limit trades quality for diversity. When no candidate below the limit is "
        "left before the budget is filled, the least similar of the rest take the places left (selection_reason says so).",
    )
    quality_floor: float | None = Field(
        0.25, ge=0, le=1,
        description="Rows whose `quality` is below this are never selected; None: no floor. 0.25 admits a clean "
        "answer of three words or more ('Red and blue.' 0.27, 'Mars is the red planet.' 0.35) and keeps out one- "
        "and two-word answers (0.14, 0.22); the ranking, not the floor, is what favours full answers.")
    quality_step: float | None = Field(
        0.1, gt=0, le=1,
        description="deita ranks quality in steps of this size (0.93 and 0.97 tie at 0.9): smaller differences are "
        "noise, and among rows that tie diversity decides, which keeps the set from collapsing onto whatever style "
        "the quality score favours. None ranks by the exact score (classic DEITA).",
    )
    prefer_longer: bool = Field(
        False, description="Within one quality step (and among rows that tie on their score), longer answers come "
        "first, instead of the seeded order: they decide which rows enter the candidate pool. Among good answers, "
        "longer ones train better (Zhao et al. 2024, 'Long Is More for Alignment'), and cost diversity: on Alpaca with "
        "pool_factor 2, the held-out NLL of a model trained on the set fell 0.017 (AlpacaEval) and 0.010 (human answers) "
        "below the defaults', at a Vendi score of 1.00x a random sample's instead of 1.23x (README, bench/outcome.py).")
    pool_factor: float | None = Field(
        8.0, ge=1,
        description="The candidate pool: the best pool_factor x budget rows by quality (and, per quota group, "
        "pool_factor x its quota) are embedded; score.pool_factor x budget of them, spread over the prompts, are "
        "scored and examined; the rest are not examined. 8 (8,000 prompts for a budget of 1,000: under a minute "
        "to embed on 2 cores) against 2 raised the curated set's Vendi score on Alpaca from 0.96x a random sample "
        "to 1.25x. None embeds every row above the floor.",
    )
    category_quota: dict[str, Annotated[float, Field(gt=0, le=1)]] | None = Field(
        default_factory=lambda: {"*": 0.1},
        description="Most a category may take of the budget, as a share, e.g. {coding: 0.2, '*': 0.1}; '*' is "
        "the share of every category not named. The default spreads the set over the ~12 task types. None: no quota.",
    )
    language_quota: dict[str, Annotated[float, Field(gt=0, le=1)]] | None = Field(
        None, description="Most a language (the `lang` column) may take of the budget, as a share; '*' as above.")
    strict_quota: bool = Field(
        False, description="False: when the candidates within quota run out before the budget is filled, the best "
        "over-quota rows take the places left (their reason says so). True: quotas are hard caps.")

    @field_validator("language_quota")
    @classmethod
    def _canonical_languages(cls, quota):
        """Quota keys in the codes `lang` holds (zh-cn and zh-tw are zh), so a quota cannot silently miss its rows."""
        if quota is None:
            return None
        keys = [k if k == "*" else LanguageConfig.canonical_code(k) for k in quota]
        if len(set(keys)) < len(keys):
            raise ValueError("two keys name one language (zh-cn and zh-tw are both zh)")
        return dict(zip(keys, quota.values()))
