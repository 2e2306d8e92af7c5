"""Shared fixtures: where the real datasets live, a fake LM scorer, and a quiet, offline environment."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # no INFO lines after pytest closes stdout
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # 20 s is too short on a loaded 2-core box

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a clean skip where it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED


class LengthScorer:
    """A fake LM: longer answers are less predictable alone, and the prompt always helps."""

    name = "fake-length"

    def score(self, prompts, answers):
        return np.array([[1.0, 1.0 + len(a) / 100, len(a)] for a in answers], dtype=np.float64)


@pytest.fixture
def length_scorer() -> LengthScorer:
    return LengthScorer()
