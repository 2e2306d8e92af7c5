"""`winnow inspect`: a run's decisions in the terminal, from one summary down to one record's story.

Each view returns rich renderables and prints nothing, so the CLI prints them and tests read them.
"""

from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from pipeline.io import write_text
from pipeline.report import runstats
from pipeline.report.columns import column_docs, undocumented
from pipeline.report.html import write_report
from pipeline.report.runstats import Run, RunError

BLOCKS = " ▁▂▃▄▅▆▇█"
SHOWN_ELSEWHERE = {"id", "messages", "instruction", "response", "content_hash", "source", "source_index", "format", "n_turns",
                   "drop_stage", "drop_reason", "drop_detail", "status", "selection_rank", "selection_reason"}


def spark(counts: np.ndarray) -> str:
    """A histogram in one line of block characters, scaled to its own peak."""
    peak = counts.max() if len(counts) and counts.max() else 1
    return "".join(BLOCKS[int(np.ceil(c / peak * (len(BLOCKS) - 1)))] for c in counts)


def cut(text: object, limit: int = 80) -> str:
    text = "" if text is None else f"{text:.4g}" if isinstance(text, float) else str(text)
    text = text.replace("\n", " ⏎ ")
    return escape(text if len(text) <= limit else text[:limit - 1] + "…")


def frame_table(frame: pl.DataFrame, title: str | None = None, limit: int = 80) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for column, dtype in frame.schema.items():
        table.add_column(column, justify="right" if dtype.is_numeric() else "left", overflow="fold")
    for row in frame.iter_rows():
        table.add_row(*(f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else cut(v, limit) for v in row))
    return table


def _funnel(run: Run) -> Table:
    steps = runstats.funnel(run.ledger, run.quarantine, run.manifest)
    peak = max(steps["remaining"].max() or 1, 1)
    return frame_table(steps.with_columns(pl.col("remaining").map_elements(
        lambda r: "█" * max(1, round(30 * r / peak)) if r else "", return_dtype=pl.String).alias("")), "funnel")


def _scores(ledger: pl.DataFrame) -> Table:
    table = Table(title="scores (all | curated, 20 bins, lengths cut at p99)", title_justify="left")
    for column in ("column", "min", "median", "max", "all", "curated"):
        table.add_column(column, justify="right" if column in ("min", "median", "max") else "left")
    for column in runstats.score_columns(ledger):
        values = ledger[column].drop_nulls().cast(pl.Float64)
        if values.is_empty():
            continue
        _, every, curated = runstats.histogram(ledger, column)
        table.add_row(column, cut(values.min()), cut(values.median()), cut(values.max()), spark(every), spark(curated))
    return table


def _diversity(manifest: dict) -> list:
    settings = manifest.get("config", {}).get("select", {})
    parts = []
    if settings:
        parts.append("selection: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    diversity = manifest.get("diversity") or {}
    sides = [k for k, v in diversity.items() if isinstance(v, dict)]
    if sides:
        keys = [k for k, v in diversity[sides[0]].items() if isinstance(v, (int, float)) and all(k in diversity[s] for s in sides)]
        parts.append(frame_table(pl.DataFrame({"metric": keys, **{s: [float(diversity[s][k]) for k in keys] for s in sides}}),
                                 "diversity: curated vs a random sample of the same size"))
    return parts


def summary(run: Run) -> list:
    """Counts, funnel, reasons, categories, languages, score histograms, selection and diversity."""
    ledger, c = run.ledger, runstats.counts(run.manifest)
    parts = [f"[bold]{escape(str(run.path))}[/]  winnow {run.manifest.get('winnow_version', '?')}:  " + "  ".join(f"{k} [bold]{v:,}[/]" for k, v in c.items()),
             _funnel(run)]
    reasons = runstats.reasons(ledger, run.manifest).with_columns((pl.col("n") / max(c["input"], 1) * 100).round(1).alias("% of input"))
    parts.append(frame_table(reasons.select("drop_stage", "drop_reason", "n", "% of input", "example"), "drop reasons", 70)
                 if reasons.height else "drop reasons: nothing was dropped")
    if not run.quarantine.is_empty():
        parts.append(frame_table(run.quarantine.group_by("stage").agg(pl.len().alias("n"), pl.col("error").first()).sort("stage"), "quarantine"))
    for column in ("category", "lang"):
        if column in ledger.columns:
            parts.append(frame_table(runstats.tally(ledger, column).head(15), f"{column} (top 15)"))
    parts += [_scores(ledger), *_diversity(run.manifest)]
    parts.append("[dim]more: --reason CODE (examples), --id ID (one record's story), --compare OTHER_RUN, --columns[/]")
    return parts


def reason_view(run: Run, reason: str, limit: int = 10) -> list:
    """A seeded sample of the records dropped for `reason` (or quarantined at stage `reason`)."""
    if reason in set(run.quarantine["stage"].to_list() if "stage" in run.quarantine.columns else []):
        rows = run.quarantine.filter(pl.col("stage") == reason)
        return [f"{rows.height:,} records quarantined at stage {reason}", frame_table(rows.head(limit).drop("raw"), limit=100)]
    known = runstats.reasons(run.ledger, run.manifest)["drop_reason"].to_list()
    if reason not in known:
        raise RunError(f"no record was dropped for {reason!r} in this run; reasons here: {', '.join(known) or 'none'}")
    rows = runstats.examples(run.ledger, reason, limit)
    total = int((run.ledger["drop_reason"] == reason).sum())
    shown = rows.select(pl.col("id").str.slice(0, 12), pl.format("{}:{}", pl.col("source").str.split("/").list.last(), "source_index").alias("source"),
                        "instruction", "response", "drop_detail")
    return [f"{total:,} records dropped for [bold]{escape(reason)}[/]; {rows.height} of them:", frame_table(shown, limit=60)]


def _one(ledger: pl.DataFrame, id_prefix: str) -> dict:
    found = runstats.find(ledger, id_prefix)
    exact = found.filter(pl.col("id") == id_prefix.strip().lower())
    found = exact if exact.height else found
    if found.height != 1:
        more = f": {', '.join(found['id'].head(5).to_list())}" if found.height else ""
        raise RunError(f"{found.height} records have an id starting with {id_prefix!r}{more}")
    return found.row(0, named=True)


def side_by_side(this: dict, other: dict, label: str) -> Table:
    table = Table(title=label, title_justify="left", show_lines=True)
    table.add_column("")
    table.add_column(f"this: {this['id']}", overflow="fold", ratio=1)
    table.add_column(f"other: {other['id']}", overflow="fold", ratio=1)
    for key in ("status", "drop_reason", "quality", "source_index", "instruction", "response"):
        if key in this:
            table.add_row(key, cut(this[key], 600), cut(other[key], 600))
    return table


def record_view(run: Run, id_prefix: str) -> list:
    """One record's whole story: where it came from, every score, its fate, and whom it lost to."""
    row, ledger = _one(run.ledger, id_prefix), run.ledger
    meaning = dict(column_docs().filter(pl.col("table") == "ledger").select("column", "meaning").iter_rows())
    facts = Table(show_header=False, box=None)
    for column in ("source", "source_index", "format", "n_turns"):
        facts.add_row(column, cut(row.get(column), 200))
    fate = (f"[green]curated[/] (rank {row.get('selection_rank')}): {cut(row.get('selection_reason'), 400)}" if row["status"] == "curated"
            else f"[red]rejected[/] by [bold]{row['drop_stage']}[/]: [bold]{row['drop_reason']}[/] ({cut(row['drop_detail'], 400)})")
    if row.get("score_evidence"):
        fate += f"\nranked by selection_score {row['selection_score']:.2f}: {row['score_evidence']}"
    scores = Table(title="every signal", title_justify="left")
    for column in ("column", "value", "meaning"):
        scores.add_column(column, overflow="fold")
    for column in ledger.columns:
        if column not in SHOWN_ELSEWHERE and row[column] is not None:
            scores.add_row(column, cut(row[column], 120), meaning.get(column, ""))
    talk = Group(*(f"[bold]{m['role']}[/]: {cut(m['content'], 1500)}" for m in row["messages"]))
    parts = [Panel(Group(facts, fate), title=row["id"]), scores, Panel(talk, title="conversation")]
    other_id = ledger.filter(pl.col("id") == row["id"]).select(runstats.other_id(ledger)).item()
    if other_id and other_id != row["id"] and ledger.filter(pl.col("id") == other_id).height:
        other = ledger.filter(pl.col("id") == other_id).row(0, named=True)
        parts.append(side_by_side(row, other, "lost to" if row.get("dup_of") else "compared with"))
    lost = runstats.lost_to_it(ledger, row["id"])
    if lost.height:
        parts.append(f"{lost.height} record(s) were dropped as duplicates of this one: {', '.join(lost['id'].head(5).to_list())}")
    return parts


def compare_view(run: Run, before: Run) -> list:
    """What changed from `before` to `run`: counts, reasons, config, and which records moved in or out."""
    now, old = runstats.counts(run.manifest), runstats.counts(before.manifest)
    counts = pl.DataFrame({"": list(now), "before": list(old.values()), "now": list(now.values())}).with_columns(change=pl.col("now") - pl.col("before"))
    key = ["drop_stage", "drop_reason"]
    reasons = (runstats.reasons(before.ledger, before.manifest).select(*key, before="n")
               .join(runstats.reasons(run.ledger, run.manifest).select(*key, now="n"), on=key, how="full", coalesce=True)
               .fill_null(0).with_columns(change=pl.col("now").cast(pl.Int64) - pl.col("before")).filter(pl.col("change") != 0))
    a, b = runstats.flatten(before.manifest.get("config", {})), runstats.flatten(run.manifest.get("config", {}))
    config = pl.DataFrame({"setting": [k for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]}, schema={"setting": pl.String})
    config = config.with_columns(before=pl.col("setting").map_elements(lambda k: str(a.get(k)), return_dtype=pl.String),
                                 now=pl.col("setting").map_elements(lambda k: str(b.get(k)), return_dtype=pl.String))
    pair = (before.ledger.select("id", old="status", old_reason="drop_reason")
            .join(run.ledger.select("id", "instruction", new="status", new_reason="drop_reason", new_detail="drop_detail"), on="id", how="inner"))
    left = pair.filter((pl.col("old") == "curated") & (pl.col("new") != "curated"))
    joined = pair.filter((pl.col("old") != "curated") & (pl.col("new") == "curated"))
    parts = [f"[bold]{escape(str(before.path))}[/] → [bold]{escape(str(run.path))}[/]", frame_table(counts, "counts"),
             frame_table(reasons, "drop reasons that changed") if reasons.height else "drop reasons: no change",
             frame_table(config, "config changes") if config.height else "config: no change",
             f"curated in both: {int(((pair['old'] == 'curated') & (pair['new'] == 'curated')).sum()):,};  "
             f"newly curated: {joined.height:,};  no longer curated: {left.height:,};  "
             f"records only in before: {before.ledger.height - pair.height:,}, only now: {run.ledger.height - pair.height:,}"]
    if left.height:
        parts.append(frame_table(left.group_by("new_reason").agg(n=pl.len()).sort("n", "new_reason", descending=[True, False]), "no longer curated, now dropped for"))
        parts.append(frame_table(left.sort("id").head(5).select("id", "instruction", "new_reason", "new_detail"), "for example", 60))
    if joined.height:
        parts.append(frame_table(joined.group_by("old_reason").agg(n=pl.len()).sort("n", "old_reason", descending=[True, False]), "newly curated, before dropped for"))
    return parts


def columns_view(ledger: pl.DataFrame | None = None) -> Table:
    """The column docs; with a run's ledger, which documented columns it holds and what it holds undocumented."""
    docs = column_docs()
    if ledger is not None:
        docs = docs.with_columns(pl.when(pl.col("table") != "ledger").then(pl.lit("")).when(pl.col("column").is_in(ledger.columns))
                                 .then(pl.lit("✓")).otherwise(pl.lit("–")).alias("in run"))
        extra = undocumented(ledger)
        docs = pl.concat([docs, pl.DataFrame([("ledger", c, str(ledger.schema[c]), "?", "(undocumented)", "✓") for c in extra],
                                             schema=docs.schema, orient="row")])
    return frame_table(docs, "columns of ledger.parquet, quarantine.parquet and embeddings.parquet", 200)


def views(run_dir: Path | None, reason: str | None = None, record_id: str | None = None, compare: Path | None = None,
          columns: bool = False, report: bool = False, limit: int = 10) -> list:
    """What `winnow inspect` prints for its options; --report also rewrites RUN_DIR/report.html."""
    if run_dir is None:
        if not columns:
            raise RunError("give a RUN_DIR (or --columns alone)")
        return [columns_view()]
    run = runstats.load_run(run_dir)
    if columns:
        parts = [columns_view(run.ledger)]
    elif reason:
        parts = reason_view(run, reason, limit)
    elif record_id:
        parts = record_view(run, record_id)
    elif compare:
        parts = compare_view(run, runstats.load_run(compare))
    else:
        parts = summary(run)
    if report:
        html = write_report(run.path, run.ledger, run.quarantine, run.manifest, run.embeddings)
        parts.append(f"wrote {write_text(html, run.path / 'report.html')}")
    return parts
