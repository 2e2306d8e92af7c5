"""The stages of a curate run, in order (ingest, mapped over the input files, comes before them)."""

from pipeline.stage import Stage
from pipeline.stages import category, decontam, dedup, embed, heuristics, language, minhash, pii, score, select, semantic

# Columns stages carry for each other, not written to the ledger: the pool's vectors (embeddings.parquet holds
# them) and dedup's keys.
WORKING = ("embedding", *minhash.COLUMNS)

STAGES: list[Stage] = [
    heuristics.STAGE,
    language.STAGE,
    decontam.STAGE,
    pii.STAGE,
    minhash.STAGE,
    dedup.STAGE,
    category.STAGE,
    embed.STAGE,
    category.CENTROID_STAGE,
    semantic.STAGE,
    score.STAGE,
    select.STAGE,
]
