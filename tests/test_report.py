"""report.html: self-contained, deterministic, tolerant of absent stages, and it renders in Chromium."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.export import counts, curated, finalize
from pipeline.io import write_json, write_parquet
from pipeline.report import runstats
from pipeline.report.diversity import diversity_metrics
from pipeline.report.html import project_2d, write_report
from pipeline.stages.category import categorize
from pipeline.stages.dedup import dedup
from pipeline.stages.heuristics import heuristics
from pipeline.stages.ingest import ingest
from pipeline.stages.language import language
from pipeline.stages.score import score
from pipeline.stages.select import select
from schemas.config import CurationConfig, LanguageConfig

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
GOOD = [
    ("Name three primary colors.", "The three primary colors are red, blue and yellow; mixing them gives every other hue."),
    ("Explain why the sky is blue.", "Sunlight scatters off air molecules, and blue light scatters most because of its short wavelength."),
    ("Write a haiku about autumn rain.", "Cold rain on the roof,\nred leaves drifting to the ground,\nthe old year lets go."),
    ("Convert 10 kilometres to miles.", "Ten kilometres is about 6.21 miles, since one kilometre is roughly 0.621 miles."),
    ("Give two tips for better sleep.", "Keep a regular bedtime, and avoid screens for an hour before you go to bed."),
    ("Show a markdown link.", "Write [text](url), as in [winnow](https://example.org); [/] and [bold] are no markup here."),
    ("Summarize the plot of Cinderella.", "A mistreated young woman attends a royal ball with a fairy godmother's help and marries the prince."),
]


def fake_embeddings(ids: list[str], dim: int = 8) -> pl.DataFrame:
    """Deterministic unit vectors per id: stands in for MiniLM where only the shapes matter."""
    rows = [np.random.default_rng(int(hashlib.sha256(i.encode()).hexdigest()[:8], 16)).normal(size=dim) for i in ids]
    vectors = np.array(rows, dtype=np.float32) / np.linalg.norm(rows, axis=1, keepdims=True)
    return pl.DataFrame({"id": ids, "embedding": pl.Series(vectors, dtype=pl.Array(pl.Float32, dim))})


def build_run(tmp_path: Path, name: str = "run", budget: int = 4, records: list[dict] | None = None, scorer=None) -> Path:
    """A run directory made by the real ingest, heuristics, dedup, category, score and select stages (language off),
    as the flow writes it."""
    pairs = [{"instruction": i, "input": "", "output": o} for i, o in GOOD]
    records = records or pairs + [
        pairs[0],  # exact duplicate
        {"instruction": "Name three primary colours.", "input": "", "output": GOOD[0][1]},  # near duplicate
        {"instruction": "Describe the ocean.", "input": "", "output": ""},  # empty response
    ]
    inputs = tmp_path / f"{name}-in"
    inputs.mkdir(exist_ok=True)
    (inputs / "data.json").write_text(json.dumps(records))
    (inputs / "broken.jsonl").write_text('{"instruction": "ok?", "output": "fine, thanks for asking me that."}\n{not json\n')
    cfg = CurationConfig.model_validate({"select": {"budget": budget, "category_quota": None, "quality_floor": None,
                                                    "max_similarity": None, "pool_factor": None}})
    ledger, quarantine = ingest(sorted(inputs.iterdir()), cfg.ingest)
    ledger = categorize(dedup(language(heuristics(ledger, cfg.heuristics), LanguageConfig(enabled=False)), cfg.dedup), cfg.category)
    embeddings = fake_embeddings(ledger["id"].to_list())
    embedded = ledger.join(embeddings, on="id", how="left", maintain_order="left")  # as the embed step leaves it
    ledger = score(embedded, cfg.score, cfg.select, scorer).drop("embedding")  # scorer None: ranked by quality
    ledger = finalize(select(ledger, embeddings, cfg.select))
    diversity = diversity_metrics(ledger, embeddings, seed=0)
    run = tmp_path / name
    for file, frame in (("ledger", ledger), ("curated", curated(ledger)), ("quarantine", quarantine), ("embeddings", embeddings)):
        write_parquet(frame, run / f"{file}.parquet")
    stages = [{"name": s, "alive": 0, "seconds": 0.0, "resumed": False} for s in ("ingest", "heuristics", "language", "dedup", "category", "score", "select")]
    write_json({"winnow_version": "test", "config": cfg.model_dump(mode="json"), "inputs": [],
                "counts": counts(ledger, quarantine), "stages": stages, "diversity": diversity}, run / "manifest.json")
    return run


def render(run: Path) -> str:
    r = runstats.load_run(run)
    return write_report(r.path, r.ledger, r.quarantine, r.manifest, r.embeddings)


def test_report_is_self_contained_deterministic_and_complete(tmp_path):
    run = build_run(tmp_path)
    html = render(run)
    assert html == render(run)
    assert not re.search(r"<script|<link|<img|\bsrc=|url\(|@import", html)
    for anchor in ("funnel", "reasons", "categories", "distributions", "map", "selection", "examples", "quarantine", "columns"):
        assert f'id="{anchor}"' in html
    assert html.count("<svg") >= 6 and "PCA of 11 embedded rows" in html
    assert "<td>vendi_score</td>" in html and "<th>random_sample</th>" in html and "category_counts" not in html
    for reason in ("exact_duplicate", "empty_response", "budget_exhausted"):
        assert f"{reason} (" in html
    assert "<th>compared with</th>" in html and "Name three primary colors." in html  # the near duplicate shows what it lost to


def test_a_scan_of_the_ledger_gives_the_same_report_counts_and_diversity_as_the_loaded_ledger(tmp_path):
    """Export passes a LazyFrame over the last stage's file (never the whole ledger): every table must match."""
    r = runstats.load_run(build_run(tmp_path))
    scan = pl.scan_parquet(r.path / "ledger.parquet").drop("messages")
    assert write_report(r.path, scan, r.quarantine, r.manifest, r.embeddings) == render(r.path)
    assert counts(scan, r.quarantine) == counts(r.ledger, r.quarantine) == r.manifest["counts"]
    assert diversity_metrics(scan, r.embeddings, seed=0) == diversity_metrics(r.ledger, r.embeddings, seed=0) == r.manifest["diversity"]
    reason = r.ledger.filter(pl.col("drop_reason").is_not_null())["drop_reason"][0]
    drawn = runstats.examples(r.ledger, reason, n=2, seed=1)
    assert runstats.examples(scan, reason, n=2, seed=1).equals(drawn.drop("messages"))
    assert drawn.equals(r.ledger.filter(pl.col("drop_reason") == reason).sample(2, seed=1).sort("source", "source_index"))


def test_funnel_ends_at_the_curated_count_and_ingest_loses_the_quarantine(tmp_path):
    r = runstats.load_run(build_run(tmp_path))
    steps = runstats.funnel(r.ledger, r.quarantine, r.manifest)
    assert steps["step"].to_list() == ["input", "ingest", "heuristics", "language", "dedup", "category", "score", "select"]
    assert steps.row(1) == ("ingest", 1, r.ledger.height)
    assert steps["remaining"][-1] == r.manifest["counts"]["curated"] == 4
    assert steps["dropped"].sum() == r.manifest["counts"]["input"] - 4


def test_report_of_a_bare_ledger_skips_what_is_absent(tmp_path):
    ledger, quarantine = ingest([Path(__file__).resolve().parents[1] / "data" / "sample" / "openai.jsonl"], CurationConfig().ingest)
    ledger = finalize(ledger)
    html = write_report(tmp_path, ledger, quarantine, {"counts": counts(ledger, quarantine)})
    assert 'id="languages"' not in html and "quality</text>" not in html
    assert "No embeddings.parquet" in html and "Nothing was dropped." in html and "Nothing was quarantined." in html
    assert "response_chars</text>" in html  # lengths are derived when heuristics did not run


def test_pca_map_separates_clusters_with_a_stable_orientation():
    rng = np.random.default_rng(0)
    centre = np.eye(16, dtype=np.float32)
    vectors = np.vstack([centre[0] + 0.05 * rng.normal(size=(30, 16)), centre[1] + 0.05 * rng.normal(size=(30, 16))])
    xy, method = project_2d(vectors)
    assert method == "PCA" and xy.shape == (60, 2)
    assert xy[:30, 0].max() < xy[30:, 0].min() or xy[30:, 0].max() < xy[:30, 0].min()
    assert np.array_equal(xy, project_2d(vectors.copy())[0])
    flipped, _ = project_2d(vectors[::-1].copy())
    assert np.allclose(flipped[::-1], xy, atol=1e-6)


def test_umap_is_used_when_installed(monkeypatch):
    fake = types.SimpleNamespace(UMAP=lambda n_components, random_state: types.SimpleNamespace(
        fit_transform=lambda v: np.zeros((len(v), n_components))))
    monkeypatch.setitem(sys.modules, "umap", fake)
    assert project_2d(np.ones((5, 4), dtype=np.float32))[1] == "UMAP"


def test_report_on_real_near_duplicates(shared_data, tmp_path):
    records = json.loads((shared_data / "neardup" / "instruction-examples.json").read_text())
    html = render(build_run(tmp_path, records=records, budget=50))
    assert "near_duplicate (" in html and "exact_duplicate (" in html
    assert "Name a dwarf planet in our solar system." in html


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    run = build_run(tmp_path)
    (run / "report.html").write_text(render(run))
    shot = tmp_path / "report.png"
    base = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", (run / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and dom.stdout.count("<svg") >= 6 and "Funnel" in dom.stdout
    subprocess.run([*base, "--window-size=1200,2400", f"--screenshot={shot}", (run / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
