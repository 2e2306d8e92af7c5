"""The ordered stages of a curate run and the resources they share.

Each step names the config sections that key its cached output, so changing a threshold reruns
that stage and the ones after it, and nothing before.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import polars as pl

from schemas.config import CurationConfig


@dataclass
class Context:
    """Models and side inputs, loaded once, on first use; tests pass fakes through the fields."""

    cfg: CurationConfig
    cache_dir: Path | None = None
    overrides: dict = field(default_factory=dict)

    def get(self, name: str, load: Callable[[], object]):
        if name not in self.overrides:
            self.overrides[name] = load()
        return self.overrides[name]


@dataclass(frozen=True)
class Step:
    name: str
    sections: tuple[str, ...]
    run: Callable[[pl.DataFrame, Context], pl.DataFrame]


STEPS: list[Step] = []


def step_key(previous_key: str, name: str, sections: tuple[str, ...], cfg: CurationConfig, version: str) -> str:
    """Cache key of a step's output: its input's key, its config sections, the code version."""
    values = {s: getattr(cfg, s).model_dump(mode="json") for s in sections}
    payload = json.dumps([previous_key, name, values, version], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
