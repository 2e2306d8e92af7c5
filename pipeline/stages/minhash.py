"""MinHash stage: per alive row, what dedup pairs rows on, so the whole-set dedup works on a compact table.

Per row, so it runs shard by shard on every worker: a hash of the compared fields folded (equal hashes are exact
duplicates) and the LSH bucket key of each band of each field's MinHash signature. Dedup then pairs rows on
(id, bucket keys) and reads the texts of only the rows that share a bucket. Working columns: the stage files carry
them, the ledger does not.
"""

import polars as pl

from pipeline.dedup.keys import bucket_column, compared_fields, exact_key, folded, signed
from pipeline.dedup.lsh import bucket_keys
from pipeline.mark import ALIVE
from pipeline.progress import Progress
from pipeline.stage import Stage, StageName
from schemas.config.dedup import DedupConfig

COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "dedup_key": (pl.Binary, "128-bit BLAKE2b of the compared fields, folded: equal keys are exact duplicates; null if dropped before dedup"),
    "dedup_buckets": (pl.List(pl.UInt32), "LSH bucket key of each band of each compared field's MinHash signature; null when "
                      "dedup.threshold is off or the row was dropped before dedup"),
}


def keyed(frame: pl.DataFrame, cfg: DedupConfig, progress: Progress | None = None) -> pl.DataFrame:
    """`frame` with COLUMNS for its alive rows; each distinct folded text is signed and bucketed once."""
    fields = compared_fields(cfg)
    rows = frame.filter(ALIVE).select("id", *[folded(f).alias(f) for f in fields])
    found = rows.select("id", exact_key(rows.select(fields)))
    if cfg.threshold is not None:
        keys = []
        for f in fields:
            distinct = rows[f].unique(maintain_order=True)
            if progress is not None:
                progress.start(distinct.len(), f"{f} texts signed")
            sig = signed(distinct, cfg, progress.advance if progress is not None else lambda n: None)
            at = rows.select(pl.col(f)).join(distinct.to_frame().with_row_index("at"), on=f, how="left", maintain_order="left")["at"]
            keys.append(bucket_keys(sig, cfg.bands)[at.to_numpy()])
        found = found.with_columns(bucket_column(keys))
    else:
        found = found.with_columns(pl.lit(None, pl.List(pl.UInt32)).alias("dedup_buckets"))
    frame = frame.drop([c for c in COLUMNS if c in frame.columns])
    return frame.join(found.select("id", *COLUMNS), on="id", how="left", maintain_order="left")


STAGE = Stage(StageName.MINHASH, lambda frame, cfg, deps: keyed(frame, cfg.dedup, deps.progress("minhash")), ("dedup",),
              adds=COLUMNS, per_row=True)
