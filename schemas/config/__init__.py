"""Configuration: one frozen model per stage (a module each), gathered in CurationConfig.

Every threshold is named and documented; `None` turns a rule off. A bad file fails in
`load_config` with one line naming the field, before any work starts.
"""

import tomllib
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.config.base import ConfigError, Section
from schemas.config.category import CategoryConfig
from schemas.config.decontam import DecontamConfig
from schemas.config.dedup import DedupConfig, SharedIndexConfig
from schemas.config.embed import EmbedConfig
from schemas.config.execution import ExecutionConfig
from schemas.config.heuristics import HeuristicsConfig
from schemas.config.ingest import IngestConfig
from schemas.config.language import LanguageConfig
from schemas.config.pii import PiiConfig
from schemas.config.score import ScoreConfig
from schemas.config.select import SelectConfig
from schemas.config.semantic import SemanticConfig
from schemas.config.train import LoraSettings, TrainConfig

__all__ = ["CategoryConfig", "ConfigError", "CurationConfig", "DecontamConfig", "DedupConfig", "EmbedConfig",
           "ExecutionConfig", "HeuristicsConfig", "IngestConfig", "LanguageConfig", "LoraSettings", "PiiConfig", "ScoreConfig",
           "Section", "SelectConfig", "SemanticConfig", "SharedIndexConfig", "TrainConfig", "load_config", "parse_config",
           "read_config_file"]


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
    score: ScoreConfig = ScoreConfig()
    embed: EmbedConfig = EmbedConfig()
    semantic: SemanticConfig = SemanticConfig()
    select: SelectConfig = SelectConfig()
    execution: ExecutionConfig = ExecutionConfig()


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


