"""Semantic dedup within the embedded pool."""

from pydantic import Field, field_validator

from schemas.config.base import Section
from schemas.config.language import LanguageConfig


class IndexConfig(Section):
    """The approximate neighbour search for a language group too large to compare every pair of: seeded
    spherical k-means clusters, each row compared with the rows whose own cluster is among its `probes`
    nearest, or whose `probes` nearest hold its own (an IVF search, as faiss's IndexIVFFlat). Numpy only;
    the same rows, config and seed give the same pairs on any runner and thread count, on one kind of CPU
    (OpenBLAS picks its kernels by CPU, and their last bits differ, as exact search's always have). Figures
    below are from bench/semantic.py."""

    exact_max_rows: int = Field(
        20_000, ge=1,
        description="Groups up to this many embedded rows compare every pair (exact: the result the index "
        "approximates, O(n^2)); larger ones search the index. A budgeted run embeds a pool of a few thousand rows, "
        "always exact; `select.budget: null` embeds every survivor. On Alpaca prompts (2 cores, lightly loaded) the "
        "index is quicker from about 10K rows: 5K exact 0.12 s, index 0.19 s; 10K 0.33 / 0.26 s; 20K 1.4 / 0.4 s; "
        "52K 9.7 / 1.4 s. 20,000 keeps the default pool (8,000 rows for a budget of 1,000), and budgets up to 2,500, "
        "exact for a few seconds at most.")
    cluster_rows: int = Field(
        1000, ge=16,
        description="Mean rows per k-means cluster (clusters = rows / this); the search costs rows x probes x "
        "this products, linear in the set, the k-means (rows / this)^2. With 4 probes on Alpaca 52K at 0.9, 250 "
        "to 2,000 all find 99.85-100% of exact's pairs (1,000: all, 3 s); on 1M synthetic rows 500 took 143 s, "
        "1,000 64 s, 2,000 56 s, each finding 99.98-99.99% of the planted copies.")
    probes: int = Field(
        4, ge=1, description="Nearest clusters each row searches (and is searched from). Of the 2,711 pairs exact "
        "search finds on Alpaca 52K at 0.9: 1 probe finds 92.4%, 2 98.8%, 4 all of them; on synthetic sets 4 find "
        "99.96% at 200K rows (21 s, exact 333 s, on busy cores) and 99.98% of planted copies at 1M (64-154 s, "
        "exact about 2.3 h); 8 cost twice 4.")
    neighbours: int = Field(
        64, ge=1,
        description="Earliest (best) neighbours kept per row, so memory stays linear when many rows are near one "
        "another; a family of near-copies still collapses to its best row, which is every member's earliest "
        "neighbour. Alpaca's most connected row has 13 earlier neighbours at 0.9: 64 leaves it whole.")
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
