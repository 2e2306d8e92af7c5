"""What a run writes at the end: the ledger with each record's fate, the curated set, the counts
(checked against what was read), the embeddings, the dedup index, the report and the manifest."""

from pathlib import Path

import polars as pl

from pipeline import runinfo
from pipeline.dedup.shared import run_identity
from pipeline.io import batches, write_batches, write_json, write_parquet, write_text
from pipeline.mark import ALIVE
from pipeline.plan import WORKING
from pipeline.report.diversity import diversity_metrics, random_baseline
from pipeline.report.html import write_report
from pipeline.report.runstats import Frame, collect
from pipeline.stage import Deps
from pipeline.stages.dedup import INDEX_FILE, build_index
from pipeline.stages.embed import as_array, embed
from pipeline.stages.pii import redact
from schemas.config import CurationConfig

WIDE = ("messages", "rejected_messages", *WORKING)  # what the counts and the report never read


def finalize(ledger: Frame) -> Frame:
    """Add `status`: every row that survived every stage is curated, the rest rejected."""
    return ledger.with_columns(pl.when(ALIVE).then(pl.lit("curated")).otherwise(pl.lit("rejected")).alias("status"))


def curated(ledger: pl.DataFrame) -> pl.DataFrame:
    """The curated rows in TRL's shapes: `messages`, and conversational `prompt`/`completion`.

    `prompt` is every turn before the last assistant turn, `completion` that turn, so
    `datasets.load_dataset("parquet", ...)` and SFTTrainer take the file as it is.
    """
    kept = ledger.filter(pl.col("status") == "curated").sort("selection_rank", nulls_last=True, maintain_order=True)
    return kept.select(
        "id",
        "messages",
        pl.col("messages").list.slice(0, pl.col("messages").list.len() - 1).alias("prompt"),
        pl.col("messages").list.slice(-1, 1).alias("completion"),
        "category", "lang", "quality", "selection_rank", "selection_reason",
        "source",
        "source_index",
    )


JSON_LINES = r"(?i)\.(jsonl|ndjson)(\.gz|\.zst)?$"


def read_problems(ledger: Frame, quarantine: pl.DataFrame, read: pl.DataFrame) -> list[str]:
    """Where the ledger and quarantine disagree with what ingest counted while reading, file by file.

    Every record read must hold a source_index in the ledger or the quarantine, each file must keep
    the rows ingest wrote for it, and a JSON Lines file has one record per non-blank line.
    """
    keys = ("source", "source_index")
    ledger, quarantine = ledger.lazy(), quarantine.lazy()
    seen = pl.concat([ledger.select(keys), quarantine.select(keys)]).filter(pl.col("source_index").is_not_null())
    found = collect(read.lazy().join(ledger.group_by("source").agg(pl.len().alias("in_ledger")), on="source", how="full", coalesce=True)
                    .join(quarantine.group_by("source").agg(pl.len().alias("in_quarantine"),
                                                            pl.col("source_index").is_null().sum().alias("notes_found")),
                          on="source", how="full", coalesce=True)
                    .join(seen.group_by("source").agg(pl.col("source_index").n_unique().alias("indexes"),
                                                      pl.col("source_index").min().alias("low"), pl.col("source_index").max().alias("high")),
                          on="source", how="full", coalesce=True)
                    .with_columns(pl.exclude("source", "format", "low", "high").fill_null(0).cast(pl.Int64),
                                  pl.col("source").is_in(read["source"].implode()).alias("was_read"))
                    .sort("source"))
    problems = []
    for r in found.iter_rows(named=True):
        src = r["source"]
        if not r["was_read"]:
            problems.append(f"{src}: in the ledger or quarantine but never read")
        if r["in_ledger"] != r["ledger_rows"]:
            problems.append(f"{src}: ingest wrote {r['ledger_rows']} ledger rows, the ledger holds {r['in_ledger']}")
        if r["in_quarantine"] != r["quarantine_rows"] or r["notes_found"] != r["notes"]:
            problems.append(f"{src}: ingest wrote {r['quarantine_rows']} quarantine rows ({r['notes']} about the file), "
                            f"the quarantine holds {r['in_quarantine']} ({r['notes_found']})")
        if r["indexes"] != r["records"] or (r["records"] and (r["low"] < 0 or r["high"] >= r["records"])):
            problems.append(f"{src}: read {r['records']} records, the ledger and quarantine account for {r['indexes']}")
    jsonl = read.filter(pl.col("source").str.contains(JSON_LINES) & (pl.col("lines") != pl.col("records")))
    problems += [f"{src}: {lines} non-blank lines but {n} records read" for src, lines, n in jsonl.select("source", "lines", "records").iter_rows()]
    return problems


def counts(ledger: Frame, quarantine: pl.DataFrame, read: pl.DataFrame | None = None) -> dict:
    """Counts for the manifest; with `read` (ingest's per-file counts), `input` is what was read and
    `input == curated + rejected + quarantined` and every file's counts are checked here."""
    stats = collect(ledger.lazy().group_by("status", "drop_stage", "drop_reason").len()).sort("drop_stage", "drop_reason")
    rejected = stats.filter(pl.col("status") == "rejected")
    n_curated = int(stats.filter(pl.col("status") == "curated")["len"].sum())
    n_rejected = int(rejected.filter(pl.col("drop_stage").is_not_null() & pl.col("drop_reason").is_not_null())["len"].sum())
    by_reason: dict[str, dict[str, int]] = {}
    for _, stage, reason, n in rejected.iter_rows():
        by_reason.setdefault(stage, {})[reason] = n
    for stage, n in quarantine.group_by("stage").len().sort("stage").iter_rows():
        by_reason.setdefault("quarantine", {})[stage] = n
    problems = read_problems(ledger, quarantine, read) if read is not None else []
    result = {
        "input": int(read["ledger_rows"].sum() + read["quarantine_rows"].sum()) if read is not None else int(stats["len"].sum()) + quarantine.height,
        "curated": n_curated,
        "rejected": n_rejected,
        "quarantined": quarantine.height,
        "by_reason": by_reason,
    }
    if read is not None:
        result["read"] = {"files": read.height, "records": int(read["records"].sum()), "lines": int(read["lines"].sum())}
    if result["input"] != result["curated"] + result["rejected"] + result["quarantined"]:
        problems.append(f"input {result['input']} != curated {n_curated} + rejected {n_rejected} + quarantined {quarantine.height}")
    if problems:
        raise RuntimeError(f"counts do not add up: {'; '.join(problems[:5])}" + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    return result


def vectors_of(pool: pl.DataFrame, ledger: Frame, cfg: CurationConfig, deps: Deps) -> pl.DataFrame:
    """embeddings.parquet: the pool's vectors (the (id, embedding) rows stages carried) and those of the
    random sample diversity is measured against (embedded here, from the cache when it can be)."""
    vectors = pool.with_columns(as_array(pool["embedding"]))
    baseline = random_baseline(ledger, cfg.select.seed).join(vectors.select("id"), on="id", how="anti")
    if baseline.height and cfg.select.budget is not None:  # diversity is measured only against a budget
        extra = embed(baseline, cfg.embed, deps.embedder, deps.embedding_cache)
        vectors = pl.concat([vectors.cast(extra.schema), extra]) if vectors.height else extra
    return vectors.sort("id")


def export_run(last_path: str, quarantine_path: str, read_path: str, cfg: CurationConfig, run_dir: str,
               inputs: list[dict], stages: list[dict], deps: Deps) -> dict:
    """Write ledger, curated set, quarantine, embeddings, dedup index, report and, last, the manifest.

    The counts are checked against what ingest read before anything is written. With a shared index, the
    curated rows join it once the run's own index is written (a failure there leaves no manifest, and a
    rerun adds them again: an id already there is left as it is).
    """
    # Nothing ledger-sized is held: `ledger` scans the last stage's output without its widest columns, each count,
    # sample and report table reads the rows and columns it needs, and the ledger file is streamed. Held in
    # memory: the alive rows (the curated set) and the pool's vectors.
    scan = finalize(pl.scan_parquet(last_path))
    ledger = scan.drop(WIDE)
    quarantine = pl.read_parquet(quarantine_path)
    read = pl.read_parquet(read_path)
    tally = counts(ledger, quarantine, read)
    run = Path(run_dir)
    embeddings = vectors_of(collect(scan.filter(pl.col("embedding").is_not_null()).select("id", "embedding")), ledger, cfg, deps)
    alive = collect(scan.filter(ALIVE).drop(WORKING))
    chosen = curated(alive)
    write_parquet(quarantine, run / "quarantine.parquet")
    columns = [c for c in pl.read_parquet_schema(last_path) if c not in WORKING]
    write_batches((finalize(part) for part in batches(last_path, columns)), run / "ledger.parquet")
    write_parquet(redact(chosen, cfg.pii) if cfg.pii.action == "redact" else chosen, run / "curated.parquet")
    index = build_index(alive, cfg.dedup)
    write_parquet(index, run / INDEX_FILE)
    shared = (deps.shared_index.insert(index, run_identity(run, collect(ledger.select("id"))["id"]))
              if deps.shared_index is not None else None)
    write_parquet(embeddings, run / "embeddings.parquet")
    names = ["ledger.parquet", "curated.parquet", "quarantine.parquet", INDEX_FILE, "embeddings.parquet", "report.html"]
    manifest = {
        "winnow_version": runinfo.code_version(),
        "config": cfg.model_dump(mode="json"),
        "inputs": inputs,
        "counts": tally,
        "read": read.to_dicts(),
        "stages": stages,
        "outputs": {name: str(run / name) for name in names},
        "packages": runinfo.packages(),
    }
    if shared is not None:
        manifest["shared_index"] = shared
    if cfg.select.budget is not None:
        manifest["diversity"] = diversity_metrics(ledger, embeddings, cfg.select.seed)
    write_text(write_report(run, ledger, quarantine, manifest, embeddings), run / "report.html")
    write_json(manifest, run / "manifest.json")
    return manifest
