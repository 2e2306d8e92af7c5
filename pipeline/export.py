"""Final tables of a run: the ledger with each record's fate, the curated set, and the counts."""

import polars as pl

from pipeline.mark import ALIVE


def finalize(ledger: pl.DataFrame) -> pl.DataFrame:
    """Add `status`: every row that survived every stage is curated, the rest rejected."""
    return ledger.with_columns(pl.when(ALIVE).then(pl.lit("curated")).otherwise(pl.lit("rejected")).alias("status"))


def curated(ledger: pl.DataFrame) -> pl.DataFrame:
    """The curated rows in TRL's shapes: `messages`, and conversational `prompt`/`completion`.

    `prompt` is every turn before the last assistant turn, `completion` that turn, so
    `datasets.load_dataset("parquet", ...)` and SFTTrainer take the file as it is.
    """
    kept = ledger.filter(pl.col("status") == "curated")
    if "selection_rank" in kept.columns:
        kept = kept.sort("selection_rank", nulls_last=True, maintain_order=True)
    optional = [c for c in ("category", "lang", "quality", "selection_rank", "selection_reason") if c in kept.columns]
    return kept.select(
        "id",
        "messages",
        pl.col("messages").list.slice(0, pl.col("messages").list.len() - 1).alias("prompt"),
        pl.col("messages").list.slice(-1, 1).alias("completion"),
        *optional,
        "source",
        "source_index",
    )


def counts(ledger: pl.DataFrame, quarantine: pl.DataFrame) -> dict:
    """Counts for the manifest; `input == curated + rejected + quarantined` is checked here."""
    n_curated = int((ledger["status"] == "curated").sum())
    n_rejected = int(((ledger["status"] == "rejected") & ledger["drop_stage"].is_not_null()
                      & ledger["drop_reason"].is_not_null()).sum())
    by_reason: dict[str, dict[str, int]] = {}
    stats = (ledger.filter(pl.col("status") == "rejected").group_by("drop_stage", "drop_reason").len()
             .sort("drop_stage", "drop_reason"))
    for stage, reason, n in stats.iter_rows():
        by_reason.setdefault(stage, {})[reason] = n
    for stage, n in quarantine.group_by("stage").len().sort("stage").iter_rows():
        by_reason.setdefault("quarantine", {})[stage] = n
    result = {
        "input": ledger.height + quarantine.height,
        "curated": n_curated,
        "rejected": n_rejected,
        "quarantined": quarantine.height,
        "by_reason": by_reason,
    }
    if result["input"] != result["curated"] + result["rejected"] + result["quarantined"]:
        raise RuntimeError(f"counts do not add up: {result}")
    return result
