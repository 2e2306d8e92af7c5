"""Every column of a run's Parquet files in one table: name, type, the stage that sets it, meaning.

Gathered from the contract (`schemas.ledger`) and from what each stage declares it adds
(`Stage.adds`), so the docs cannot drift from the code; `winnow inspect --columns` prints it and
report.html embeds it.
"""

import polars as pl

from pipeline.plan import STAGES, WORKING
from pipeline.stages.embed import EMBEDDING_COLUMNS
from schemas.ledger import LEDGER_COLUMNS, QUARANTINE_COLUMNS, STAGE_COLUMNS

DOC_SCHEMA = {"table": pl.String, "column": pl.String, "dtype": pl.String, "set_by": pl.String, "meaning": pl.String}


def _stage_columns() -> list[tuple[str, str, pl.DataType, str]]:
    """(stage, column, dtype, meaning) for every column a stage adds to the ledger (vectors go to their own file,
    dedup's keys stay in the stage files)."""
    return [(str(stage.name), column, dtype, meaning) for stage in STAGES
            for column, (dtype, meaning) in stage.adds.items() if column not in WORKING]


def column_docs() -> pl.DataFrame:
    """One row per documented column, with the stage that sets it."""
    rows: dict[tuple[str, str], dict] = {}

    def add(table: str, column: str, dtype: pl.DataType, set_by: str, meaning: str) -> None:
        rows.setdefault((table, column), {"table": table, "column": column, "dtype": str(dtype), "set_by": set_by, "meaning": meaning})

    for column, (dtype, meaning) in LEDGER_COLUMNS.items():
        add("ledger", column, dtype, "ingest", meaning)
    for stage, column, dtype, meaning in _stage_columns():
        add("ledger", column, dtype, stage, meaning)
    for column, (dtype, meaning) in STAGE_COLUMNS.items():
        add("ledger", column, dtype, "export", meaning)
    for column, (dtype, meaning) in QUARANTINE_COLUMNS.items():
        add("quarantine", column, dtype, "ingest", meaning)
    for column, (dtype, meaning) in EMBEDDING_COLUMNS.items():
        add("embeddings", column, dtype, "embed", meaning)
    return pl.DataFrame(list(rows.values()), schema=DOC_SCHEMA)


def undocumented(ledger: pl.DataFrame) -> list[str]:
    """Ledger columns of a run that no contract or stage module documents."""
    known = set(column_docs().filter(pl.col("table") == "ledger")["column"].to_list())
    return [c for c in ledger.columns if c not in known]
