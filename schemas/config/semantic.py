"""Semantic dedup within the embedded pool."""

from pydantic import Field, field_validator

from schemas.config.base import Section
from schemas.config.language import LanguageConfig


class SemanticConfig(Section):
    """Near-duplicates in meaning, found by embedding cosine similarity."""

    threshold: float | None = Field(
        0.9, gt=0, le=1,
        description="Cosine similarity (MiniLM, prompts) at or above which two records are duplicates in meaning; "
        "None turns it off. On Alpaca, pairs at 0.9+ are paraphrases of one request ('Create a recipe for an "
        "omelette' / 'Create instructions for how to make an omelette', 0.905); below 0.9 they drift to related tasks.",
    )
    languages: list[str] | None = Field(
        ["en"],
        description="Languages (`lang` codes) the embedding model covers: only rows in one of them are judged, each "
        "against rows of its own language; rows in any other language are never semantic duplicates. `und` (too short "
        "to detect) and rows the language stage did not judge count as the first one listed. MiniLM is English-only: "
        "judging every row, it called 164 of 1,000 Chinese Alpaca prompts duplicates at 0.9, and 1 in 40 read was "
        "right. None: every row is judged against every other, whatever its language (for a multilingual model).",
    )

    @field_validator("languages")
    @classmethod
    def _canonical_languages(cls, languages: list[str] | None) -> list[str] | None:
        if languages is not None and not languages:
            raise ValueError("name at least one language, or null to judge every row")
        return None if languages is None else list(dict.fromkeys(map(LanguageConfig.canonical_code, languages)))
