"""The one way to drop a record: mark it, first failing rule wins."""

import polars as pl

from pipeline.stage import StageName
from schemas.ledger import DropReason

ALIVE = pl.col("drop_reason").is_null()


def mark(
    frame: pl.DataFrame,
    when: pl.Expr,
    stage: StageName,
    reason: DropReason | pl.Expr,
    detail: pl.Expr | str | None = None,
) -> pl.DataFrame:
    """Set drop_stage/drop_reason/drop_detail where `when` holds and the row is still alive.

    Earlier marks are never overwritten, so the order of stages and rules sets precedence.
    `reason` may be an expression when one rule yields several codes (dedup: exact/near).
    """
    hit = ALIVE & when.fill_null(False)
    reason_expr = pl.lit(str(reason)) if isinstance(reason, DropReason) else reason
    if detail is None:
        detail_expr = pl.lit(None, pl.String)
    elif isinstance(detail, str):
        detail_expr = pl.lit(detail)
    else:
        detail_expr = detail
    return frame.with_columns(
        pl.when(hit).then(pl.lit(str(stage))).otherwise(pl.col("drop_stage")).alias("drop_stage"),
        pl.when(hit).then(reason_expr).otherwise(pl.col("drop_reason")).alias("drop_reason"),
        pl.when(hit).then(detail_expr.cast(pl.String)).otherwise(pl.col("drop_detail")).alias("drop_detail"),
    )
