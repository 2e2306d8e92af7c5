"""Semantic dedup within the embedded pool."""

from pydantic import Field, field_validator

from schemas.config.base import Section
from schemas.config.language import LanguageConfig


class IndexConfig(Section):
    """The approximate neighbour search for a language group too large to compare every pair of: seeded
    spherical k-means clusters, each row compared with the rows whose own cluster is among its `probes`
    nearest, or whose `probes` nearest hold its own (an IVF search, as faiss's IndexIVFFlat). Numpy only;
    the same rows, config and seed give the same pairs on any runner and thread count. Figures below
    are from bench/semantic.py."""

    exact_max_rows: int = Field(
        20_000, ge=1,
        description="Groups up to this many embedded rows compare every pair (exact: the result the index "
        "approximates, O(n^2)); larger ones search the index. A budgeted run embeds a pool of a few thousand rows, "
        "always exact; `select.budget: null` embeds every survivor.")
    cluster_rows: int = Field(
        1000, ge=16,
        description="Mean rows per k-means cluster (clusters = rows / this); the search costs rows x probes x "
        "this products, linear in the set.")
    probes: int = Field(
        4, ge=1, description="Nearest clusters each row searches (and is searched from).")
    neighbours: int = Field(
        64, ge=1,
        description="Most similar earlier rows kept per row: bounds memory when many rows are near one another "
        "(a family of near-copies); a row is decided by the best kept one of them.")
    seed: int = Field(0, description="Seed of the k-means sample and starting centroids.")


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

    index: IndexConfig | None = Field(
        IndexConfig(), description="Approximate search for large groups (above `index.exact_max_rows`); None "
        "compares every pair of every group, however large (O(n^2): hours at 1M rows).")

    @field_validator("languages")
    @classmethod
    def _canonical_languages(cls, languages: list[str] | None) -> list[str] | None:
        if languages is not None and not languages:
            raise ValueError("name at least one language, or null to judge every row")
        return None if languages is None else list(dict.fromkeys(map(LanguageConfig.canonical_code, languages)))
