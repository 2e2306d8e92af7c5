"""report.html: one self-contained page (inline SVG, no script, no CDN) that shows what a run did and why.

Pure: returns the HTML text; the flow writes it atomically. Sections whose columns are absent are left out.
"""

from html import escape
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.io import rows_by_id
from pipeline.report import charts, runstats
from pipeline.report.columns import column_docs

MAX_POINTS = 4000
PALETTE = ["#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#1b9e77", "#666666", "#386cb0"]
CSS = """body{font:14px/1.45 system-ui,sans-serif;color:#222;max-width:1100px;margin:24px auto;padding:0 16px}
h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}.cards{display:flex;gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 16px}.card b{display:block;font-size:22px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #e3e3e3;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f4f6f8}td.t{min-width:140px;max-width:340px;overflow-wrap:anywhere;white-space:pre-wrap;word-break:break-word}
.muted{color:#777}details{margin:6px 0}summary{cursor:pointer;font-weight:600}code{font-size:12px}"""


def _cut(text: object, limit: int = 240) -> str:
    text = "" if text is None else f"{text:.4g}" if isinstance(text, float) else str(text)
    return text if len(text) <= limit else text[:limit] + "…"


def table(frame: pl.DataFrame, wide: tuple[str, ...] = ()) -> str:
    """An HTML table of a small frame; columns in `wide` wrap their long text."""
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows():
        cells = (f'<td class="t">{escape(_cut(v))}</td>' if c in wide else f"<td>{escape(_cut(v, 120))}</td>"
                 for c, v in zip(frame.columns, row))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<h2 id="{anchor}">{escape(title)}</h2>' + "".join(p for p in parts if p)


def _funnel(ledger, quarantine, manifest) -> str:
    steps = runstats.funnel(ledger, quarantine, manifest)
    notes = [f"{r:,}" + (f"  (−{d:,})" if d else "") for d, r in steps.select("dropped", "remaining").iter_rows()]
    return charts.hbars(steps["step"].to_list(), steps["remaining"].to_list(), charts.ACCENT, notes=notes, title="funnel")


def _reasons(ledger, manifest) -> str:
    found = runstats.reasons(ledger, manifest)
    if found.is_empty():
        return '<p class="muted">Nothing was dropped.</p>'
    stages = found["drop_stage"].unique(maintain_order=True).to_list()
    colors = [PALETTE[stages.index(s) % len(PALETTE)] for s in found["drop_stage"]]
    labels = [f"{s} · {r}" for s, r in found.select("drop_stage", "drop_reason").iter_rows()]
    return charts.hbars(labels, found["n"].to_list(), colors, title="drop reasons") + table(
        found.rename({"example": "example detail"}), wide=("example detail",))


def _tally(ledger, column: str, top: int = 20) -> str:
    found = runstats.tally(ledger, column)
    if found.is_empty():
        return ""
    if found.height > top:
        rest = found.slice(top).select(pl.lit(f"{found.height - top} others").alias(column), pl.col("all").sum(), pl.col("curated").sum())
        found = pl.concat([found.head(top), rest])
    notes = [f"{a:,} · {c:,} curated" for a, c in found.select("all", "curated").iter_rows()]
    return charts.hbars(found[column].to_list(), found["all"].to_list(), inner=found["curated"].to_list(), notes=notes, title=column)


def _histogram(ledger, column: str) -> str:
    edges, all_counts, curated = runstats.histogram(ledger, column)
    return charts.histogram(edges, [("all", all_counts, charts.GREY), ("curated", curated, charts.ACCENT)], column)


def _distributions(ledger) -> str:
    columns = runstats.score_columns(ledger)
    main = [c for c in ("instruction_chars", "response_chars", "quality", "selection_score", "answer_nll_alone", "ifd") if c in columns]
    rest = "".join(_histogram(ledger, c) for c in columns if c not in main)
    more = f"<details><summary>other signals</summary>{rest}</details>" if rest else ""
    return ('<p class="muted">Share of rows per bin; lengths are cut at the 99th percentile. The model scores '
            '(selection_score, answer_nll_alone, ifd) exist for the scored candidate pool only.</p>'
            + "".join(_histogram(ledger, c) for c in main) + more)


def project_2d(vectors: np.ndarray) -> tuple[np.ndarray, str]:
    """2-D coordinates: UMAP where it is installed, else PCA by SVD (signs fixed, so the map is stable)."""
    try:
        import umap
    except ImportError:
        centred = vectors.astype(np.float64) - vectors.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        axes = vt[:2] * np.sign(vt[:2, [0]] + (vt[:2, [0]] == 0))
        return centred @ axes.T, "PCA"
    return umap.UMAP(n_components=2, random_state=0).fit_transform(vectors), "UMAP"


def _map(ledger, embeddings) -> str:
    if embeddings is None or embeddings.is_empty():
        return '<p class="muted">No embeddings.parquet in this run.</p>'
    status = runstats.collect(ledger.lazy().select("id", "status").filter(pl.col("id").is_in(embeddings["id"].implode())))
    rows = embeddings.join(status, on="id", how="inner").sort("id")
    if rows.height > MAX_POINTS:
        curated = rows.filter(pl.col("status") == "curated")
        rest = rows.filter(pl.col("status") != "curated")
        rows = pl.concat([curated, rest.sample(max(MAX_POINTS - curated.height, 0), seed=0)]).sort("id")
    if rows.height < 3:
        return '<p class="muted">Too few embedded rows for a map.</p>'
    xy, method = project_2d(rows["embedding"].to_numpy().astype(np.float32))
    chosen = (rows["status"] == "curated").to_numpy()
    svg = charts.scatter(xy, [("rejected", ~chosen, charts.GREY, 2.2), ("curated", chosen, charts.ACCENT, 2.6)], "embedding map")
    return (f'<p class="muted">{method} of {rows.height:,} embedded rows ({embeddings.height:,} in the run: the rows '
            f"selection examined), curated highlighted.</p>{svg}")


def _scalars(data: dict) -> dict[str, object]:
    """Dotted scalar entries of a manifest dict; count tables and lists are drawn elsewhere or too long."""
    return {k: v for k, v in runstats.flatten(data).items() if "_counts" not in k and not isinstance(v, (dict, list))}


def _selection(manifest: dict) -> str:
    settings = manifest.get("config", {}).get("select", {})
    parts = [table(pl.DataFrame({"setting": list(map(str, settings)), "value": [str(v) for v in settings.values()]}))] if settings else []
    if isinstance(manifest.get("select"), dict):
        info = _scalars(manifest["select"])
        parts.append(table(pl.DataFrame({"select": list(info), "value": [str(v) for v in info.values()]})))
    diversity = manifest.get("diversity") or {}
    sides = [k for k, v in diversity.items() if isinstance(v, dict)]
    if sides:
        flat = {s: _scalars(diversity[s]) for s in sides}
        keys = [k for k in flat[sides[0]] if all(k in flat[s] for s in sides)]
        parts.append("<h3>Diversity: curated set vs a random sample of the same size</h3>" + table(
            pl.DataFrame({"metric": keys, **{s: [str(flat[s][k]) for k in keys] for s in sides}})))
    return "".join(parts)


def _examples(ledger, manifest) -> str:
    """Sample rows per reason; where a row lost to another record, that record's instruction beside it."""
    blocks = []
    for reason, n in runstats.reasons(ledger, manifest).select("drop_reason", "n").iter_rows():
        rows = runstats.examples(ledger, reason).select(pl.col("id").str.slice(0, 12), "source_index", "instruction", "response",
                                                        "drop_detail", runstats.other_id(ledger))
        others = rows_by_id(ledger, rows["other_id"].drop_nulls().unique(maintain_order=True)).select(
            pl.col("id").alias("other_id"), pl.col("instruction").alias("compared with"))
        rows = rows.join(others, on="other_id", how="left", maintain_order="left").drop("other_id")
        rows = rows if rows["compared with"].null_count() < rows.height else rows.drop("compared with")
        wide = ("instruction", "response", "drop_detail", "compared with")
        blocks.append(f"<details><summary>{escape(reason)} ({n:,})</summary>{table(rows, wide)}</details>")
    return "".join(blocks) or '<p class="muted">Nothing was dropped.</p>'


def _curated(ledger) -> str:
    columns = runstats.columns_of(ledger)
    rank = ["selection_rank"] if "selection_rank" in columns else []
    picks = runstats.collect(ledger.lazy().select("id", *rank, curated=pl.col("status") == "curated").filter("curated"))
    picks = picks.sort(rank, nulls_last=True, maintain_order=True) if rank else picks
    shown = [c for c in ("id", "selection_rank", "category", "quality", "instruction", "response", "selection_reason") if c in columns]
    return table(rows_by_id(ledger, picks["id"].head(8)).select(shown), ("instruction", "response", "selection_reason"))


def _quarantine(quarantine) -> str:
    if quarantine.is_empty():
        return '<p class="muted">Nothing was quarantined.</p>'
    return table(quarantine.head(20).select([c for c in ("source", "source_index", "offset", "stage", "error", "raw") if c in quarantine.columns]), ("error", "raw"))


def _stages(manifest: dict) -> str:
    rows = [{k: s.get(k) for k in ("name", "alive", "seconds", "resumed")} for s in manifest.get("stages", [])]
    return table(pl.DataFrame(rows)) if rows else '<p class="muted">The manifest lists no stages.</p>'


def write_report(run_dir: Path, ledger: runstats.Frame, quarantine: pl.DataFrame, manifest: dict,
                 embeddings: pl.DataFrame | None = None) -> str:
    """The report page of one run, as HTML text (the ledger loaded, or a LazyFrame over its file)."""
    ledger = runstats.with_status(ledger)
    columns = runstats.columns_of(ledger)
    c = runstats.counts(manifest)
    cards = "".join(f'<div class="card">{k}<b>{v:,}</b></div>' for k, v in c.items())
    sections = [
        _section("funnel", "Funnel: records left after each stage", _funnel(ledger, quarantine, manifest)),
        _section("reasons", "Why records were dropped", _reasons(ledger, manifest)),
        _section("categories", "Categories", _tally(ledger, "category")) if "category" in columns else "",
        _section("languages", "Languages", _tally(ledger, "lang")) if "lang" in columns else "",
        _section("distributions", "Lengths and scores, curated vs all", _distributions(ledger)),
        _section("map", "Embedding map", _map(ledger, embeddings)),
        _section("selection", "Selection", _selection(manifest)),
        _section("curated", "Curated set: first picks", _curated(ledger)),
        _section("examples", "Examples per drop reason", _examples(ledger, manifest)),
        _section("quarantine", f"Quarantine ({quarantine.height:,})", _quarantine(quarantine)),
        _section("stages", "Stages", _stages(manifest)),
        _section("columns", "Ledger columns", f"<details><summary>what each column means</summary>{table(column_docs(), ('meaning',))}</details>"),
    ]
    title = f"winnow run {Path(run_dir).name}"
    meta = f"winnow {escape(str(manifest.get('winnow_version', '?')))} · {len(manifest.get('inputs', []))} input file(s) · {escape(str(run_dir))}"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{CSS}</style></head>'
            f'<body><h1>{escape(title)}</h1><p class="muted">{meta}</p><div class="cards">{cards}</div>{"".join(sections)}</body></html>\n')
