"""What a run directory says, as small tables: the terminal views and report.html both draw these.

Tolerant by design: every column a stage adds may be absent (a run made before that stage existed,
or with it turned off), and each function returns what the present columns allow.

The ledger may be a DataFrame (a loaded run) or a LazyFrame (export's scan of the last stage's file):
each function collects only the small table it returns, so export never holds the ledger whole.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.io import rows_by_id

SCORES = ("quality", "selection_score", "answer_nll_alone", "ifd", "answer_nll", "instruction_chars", "response_chars", "response_words", "alnum_share", "ngram_repeat_share",
          "line_repeat_share", "eval_overlap", "dup_similarity")
UNKNOWN = "(none)"
ID_PATTERN = r"\b([0-9a-f]{32}(?:-\d+)?)\b"


Frame = pl.DataFrame | pl.LazyFrame


def collect(query: pl.LazyFrame) -> pl.DataFrame:
    """Run a query in batches (polars' streaming engine): over a million-row file, no column is held whole."""
    return query.collect(engine="streaming")


def columns_of(frame: Frame) -> list[str]:
    return frame.collect_schema().names()


class RunError(ValueError):
    """A path that is not a readable run directory."""


@dataclass(frozen=True)
class Run:
    path: Path
    ledger: pl.DataFrame
    quarantine: pl.DataFrame
    manifest: dict
    embeddings: pl.DataFrame | None


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory; embeddings.parquet is optional."""
    path = Path(run_dir)
    missing = [n for n in ("ledger.parquet", "manifest.json") if not (path / n).is_file()]
    if missing:
        raise RunError(f"{path} is not a winnow run directory (missing {', '.join(missing)})")
    quarantine = pl.read_parquet(path / "quarantine.parquet") if (path / "quarantine.parquet").is_file() else pl.DataFrame()
    embeddings = pl.read_parquet(path / "embeddings.parquet") if (path / "embeddings.parquet").is_file() else None
    manifest = json.loads((path / "manifest.json").read_text())
    if "counts" not in manifest:
        raise RunError(f"{path} is not a finished winnow run (its manifest.json has no counts)")
    return Run(path, with_status(pl.read_parquet(path / "ledger.parquet")), quarantine, manifest, embeddings)


def with_status(ledger: Frame) -> Frame:
    """`status` and the two length columns, derived when the ledger lacks them."""
    extra, columns = [], columns_of(ledger)
    if "status" not in columns:
        extra.append(pl.when(pl.col("drop_reason").is_null()).then(pl.lit("curated")).otherwise(pl.lit("rejected")).alias("status"))
    for column, text in (("instruction_chars", "instruction"), ("response_chars", "response")):
        if column not in columns and text in columns:
            extra.append(pl.col(text).fill_null("").str.len_chars().cast(pl.Int64).alias(column))
    return ledger.with_columns(extra) if extra else ledger


def counts(manifest: dict) -> dict[str, int]:
    """The run's counts as export checked and wrote them (`input` is what ingest read, not ledger plus quarantine)."""
    return {k: manifest["counts"][k] for k in ("input", "curated", "rejected", "quarantined")}


def stage_order(ledger: Frame, manifest: dict) -> list[str]:
    """Stages in run order (manifest), then any stage that dropped rows but the manifest does not list."""
    order = [s["name"] for s in manifest.get("stages", []) if s.get("name") != "ingest"]
    dropped = collect(ledger.lazy().select(pl.col("drop_stage").drop_nulls().unique(maintain_order=True)))["drop_stage"].to_list()
    return order + [s for s in dropped if s not in order]


def funnel(ledger: Frame, quarantine: pl.DataFrame, manifest: dict) -> pl.DataFrame:
    """(step, dropped, remaining): input, valid after ingest, then alive after each stage."""
    by_stage = collect(ledger.lazy().group_by("drop_stage").len())
    per_stage, height = dict(by_stage.drop_nulls().iter_rows()), int(by_stage["len"].sum())
    rows = [("input", 0, height + quarantine.height), ("ingest", quarantine.height, height)]
    for stage in stage_order(ledger, manifest):
        dropped = per_stage.get(stage, 0)
        rows.append((stage, dropped, rows[-1][2] - dropped))
    return pl.DataFrame(rows, schema={"step": pl.String, "dropped": pl.Int64, "remaining": pl.Int64}, orient="row")


def reasons(ledger: Frame, manifest: dict) -> pl.DataFrame:
    """(drop_stage, drop_reason, n, example detail: the first in sort order), stages in run order, biggest reason first."""
    order = {s: i for i, s in enumerate(stage_order(ledger, manifest))}
    found = collect(ledger.lazy().select("drop_stage", "drop_reason", "drop_detail").filter(pl.col("drop_reason").is_not_null())
                    .group_by("drop_stage", "drop_reason").agg(pl.len().alias("n"), pl.col("drop_detail").min().alias("example")))
    return (found.with_columns(pl.col("drop_stage").replace_strict(order, default=len(order)).alias("_o"))
            .sort(["_o", "n", "drop_reason"], descending=[False, True, False]).drop("_o"))


def tally(ledger: Frame, column: str) -> pl.DataFrame:
    """(value, all, curated) counts of one column, biggest first; empty when the column is absent."""
    schema = {column: pl.String, "all": pl.UInt32, "curated": pl.UInt32}
    if column not in columns_of(ledger):
        return pl.DataFrame(schema=schema)
    value = pl.col(column).cast(pl.String).fill_null(UNKNOWN)
    return collect(ledger.lazy().group_by(value).agg(pl.len().cast(pl.UInt32).alias("all"),
                                                     (pl.col("status") == "curated").sum().cast(pl.UInt32).alias("curated"))
                   .sort(["all", column], descending=[True, False]))


def score_columns(ledger: Frame) -> list[str]:
    """Numeric per-record signals worth a histogram: the known ones first, then any other float column."""
    schema = ledger.collect_schema()
    known = [c for c in SCORES if c in schema]
    other = [c for c, t in schema.items() if t.is_float() and c not in known]
    return known + other


def histogram(ledger: Frame, column: str, bins: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(edges, counts of all rows, counts of curated rows); lengths are cut at the 99th percentile."""
    values = collect(ledger.lazy().select(pl.col(column).cast(pl.Float64), curated=pl.col("status") == "curated").drop_nulls(column))
    data = values[column].to_numpy()
    if not len(data):
        return np.zeros(bins + 1), np.zeros(bins, dtype=np.int64), np.zeros(bins, dtype=np.int64)
    low, high = float(data.min()), float(data.max())
    if high > 1.0 or low < 0.0:
        high = float(np.quantile(data, 0.99))
    high = high if high > low else low + 1.0
    edges = np.linspace(low, high, bins + 1)
    clipped = np.clip(data, low, high)
    all_counts = np.histogram(clipped, edges)[0]
    curated = np.histogram(clipped[values["curated"].to_numpy()], edges)[0]
    return edges, all_counts, curated


def sample_where(frame: Frame, where: pl.Expr, n: int, seed: int, shuffle: bool = False) -> pl.DataFrame:
    """`frame.filter(where).sample(...)`, the same rows: drawn over the matching ids, then read `rows_by_id`
    (at a million rows, the matching rows are a ledger's worth of memory)."""
    matching = collect(frame.lazy().select("id", where.alias("in")).filter("in"))
    return rows_by_id(frame, matching.sample(min(n, matching.height), seed=seed, shuffle=shuffle)["id"])


def examples(ledger: Frame, reason: str, n: int = 5, seed: int = 0) -> pl.DataFrame:
    """A seeded sample of the rows dropped for `reason`, in source order."""
    return sample_where(ledger, pl.col("drop_reason") == reason, n, seed).sort("source", "source_index")


def find(ledger: pl.DataFrame, id_prefix: str) -> pl.DataFrame:
    """Rows whose id starts with `id_prefix` (ids are long; a unique prefix is enough)."""
    return ledger.filter(pl.col("id").str.starts_with(id_prefix.strip().lower()))


def lost_to_it(ledger: pl.DataFrame, record_id: str) -> pl.DataFrame:
    """Rows dropped as duplicates of `record_id`."""
    if "dup_of" not in ledger.columns:
        return ledger.clear()
    return ledger.filter(pl.col("dup_of") == record_id)


def other_id(frame: pl.DataFrame) -> pl.Expr:
    """The record a row was judged against: `dup_of`, else the first id its drop_detail names (a selected pick)."""
    named = pl.col("drop_detail").str.extract(ID_PATTERN, 1)
    return (pl.coalesce(pl.col("dup_of"), named) if "dup_of" in columns_of(frame) else named).alias("other_id")


def flatten(data: dict, prefix: str = "") -> dict:
    """Nested manifest dicts as one level of dotted keys: {"select": {"budget": 3}} -> {"select.budget": 3}."""
    out = {}
    for key, value in data.items():
        out |= flatten(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": value}
    return out
