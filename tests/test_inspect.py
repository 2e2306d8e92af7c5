"""`winnow inspect`: summary, --reason, --id, --compare, --columns, --report, on runs made by the real stages."""

import json
import shutil

import numpy as np
import polars as pl
import pytest
from test_report import build_run
from typer.testing import CliRunner

from flows.cli import app
from pipeline.plan import STAGES, WORKING
from pipeline.report import runstats
from pipeline.report.columns import column_docs, undocumented
from pipeline.report.html import write_report
from pipeline.report.inspect import spark
from schemas.ledger import LEDGER_COLUMNS, QUARANTINE_COLUMNS


def inspect(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["inspect", *map(str, args)], env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.fixture
def run(tmp_path):
    return build_run(tmp_path)


def ledger_of(run) -> pl.DataFrame:
    return pl.read_parquet(run / "ledger.parquet")


def test_column_docs_gather_the_contract_and_every_stage_module():
    docs = column_docs()
    assert docs.select("table", "column").is_unique().all()
    ledger = docs.filter(pl.col("table") == "ledger")
    assert set(LEDGER_COLUMNS) | {"status"} <= set(ledger["column"])
    assert set(docs.filter(pl.col("table") == "quarantine")["column"]) == set(QUARANTINE_COLUMNS)
    for stage in STAGES:
        for column in stage.adds:
            if column not in WORKING:  # vectors and dedup's keys are not ledger columns
                assert ledger.filter(pl.col("column") == column)["set_by"].item() == stage.name
    assert docs["meaning"].str.len_chars().min() > 0


def test_every_column_a_run_writes_is_documented(run):
    assert set(undocumented(ledger_of(run))) <= {"content_hash"}


def test_summary_shows_counts_funnel_reasons_and_scores(run):
    code, out = inspect(run)
    assert code == 0, out
    assert "curated 4" in out and "quarantined 1" in out
    for text in ("funnel", "exact_duplicate", "empty_response", "budget_exhausted", "quality", "vendi_score", "--reason CODE"):
        assert text in out


def test_reason_lists_the_records_dropped_for_it(run):
    ledger = ledger_of(run)
    dropped = ledger.filter(pl.col("drop_reason") == "empty_response")["id"].item()
    code, out = inspect(run, "--reason", "empty_response")
    assert code == 0 and "1 records dropped for empty_response" in out and dropped[:12] in out
    code, out = inspect(run, "--reason", "parse")
    assert code == 0 and "quarantined at stage parse" in out and "broken.jsonl" in out
    code, out = inspect(run, "--reason", "no_such_reason")
    assert code == 2 and "reasons here:" in out and "exact_duplicate" in out


def test_id_tells_a_duplicate_story_side_by_side(run):
    ledger = ledger_of(run)
    near = ledger.filter(pl.col("drop_reason") == "near_duplicate").row(0, named=True)
    code, out = inspect(run, "--id", near["id"])
    assert code == 0, out
    assert "near_duplicate" in out and "lost to" in out and near["dup_of"] in out
    assert "Name three primary colours." in out and "Name three primary colors." in out
    assert "data.json" in out and f"source_index  {near['source_index']}" in out
    code, out = inspect(run, "--id", near["dup_of"])
    assert code == 0 and "dropped as duplicates of this one" in out and near["id"] in out


def test_id_of_a_selection_drop_shows_the_pick_its_detail_names(run):
    ledger = ledger_of(run)
    row = ledger.filter(pl.col("drop_reason") == "budget_exhausted").sort("id").row(0, named=True)
    pick = runstats.find(ledger, row["drop_detail"].split("most similar pick ")[1].split()[0]).row(0, named=True)
    code, out = inspect(run, "--id", row["id"])
    assert code == 0 and "compared with" in out and pick["id"] in out and pick["status"] == "curated"


def test_id_and_report_explain_the_model_scores(tmp_path, length_scorer):
    run = build_run(tmp_path, scorer=length_scorer)
    ledger = ledger_of(run)
    pick = ledger.filter(pl.col("selection_rank") == 1).row(0, named=True)
    assert pick["ifd"] < 1 and "answer_nll_alone" in pick["selection_reason"]
    code, out = inspect(run, "--id", pick["id"])
    assert code == 0 and "ranked by selection_score" in out and "answer_nll_alone" in out and "ifd" in out
    code, out = inspect(run)
    assert "selection_score" in out and "ifd" in out
    html = write_report(run, ledger, pl.read_parquet(run / "quarantine.parquet"), runstats.load_run(run).manifest, None)
    assert "selection_score" in html


def test_record_text_is_printed_as_text_not_markup(run):
    markup = ledger_of(run).filter(pl.col("instruction") == "Show a markdown link.")["id"].item()
    code, out = inspect(run, "--id", markup)
    assert code == 0 and "[/] and [bold] are no markup here" in out


def test_id_prefix_finds_one_record_and_ambiguity_is_a_clear_error(run):
    ledger = ledger_of(run)
    twin = ledger.filter(pl.col("id").str.ends_with("-1"))["id"].item()  # an exact duplicate: its id is the original's + "-1"
    code, out = inspect(run, "--id", twin[:12])
    assert code == 2 and "2 records have an id starting with" in out
    assert inspect(run, "--id", twin[:-2])[0] == 0  # the full id of the original is not ambiguous
    unique = ledger.filter(pl.col("drop_reason") == "empty_response")["id"].item()
    code, out = inspect(run, "--id", unique[:8].upper())
    assert code == 0 and "empty_response" in out and "Describe the ocean." in out
    code, out = inspect(run, "--id", "zzzz")
    assert code == 2 and "0 records have an id starting with 'zzzz'" in out
    code, out = inspect(run, "--id", "zzzz")
    assert code == 2 and "0 records have an id starting with 'zzzz'" in out


def test_compare_shows_config_changes_and_records_that_moved(tmp_path):
    before = build_run(tmp_path, "before", budget=4)
    now = build_run(tmp_path, "now", budget=2)
    code, out = inspect(now, "--compare", before)
    assert code == 0, out
    assert "select.budget" in out and "newly curated: 0;  no longer curated: 2" in out
    assert "curated in both: 2" in out and "budget_exhausted" in out


def test_columns_prints_the_docs_with_or_without_a_run(run):
    code, out = inspect("--columns")
    assert code == 0 and "dup_of" in out and "quality" in out and "embeddings" in out
    code, out = inspect(run, "--columns")
    assert code == 0 and "in run" in out and "content_hash" in out
    assert inspect()[0] == 2


def test_not_a_run_directory(tmp_path, run):
    code, out = inspect(tmp_path)
    assert code == 2 and "not a winnow run directory" in out
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    manifest = json.loads((unfinished / "manifest.json").read_text())
    (unfinished / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "counts"}))
    code, out = inspect(unfinished)
    assert code == 2 and "not a finished winnow run" in out and "Traceback" not in out


def test_report_option_rewrites_report_html(run):
    code, _ = inspect(run, "--report")
    r = runstats.load_run(run)
    assert code == 0 and (run / "report.html").read_text() == write_report(r.path, r.ledger, r.quarantine, r.manifest, r.embeddings)


def test_spark_scales_to_its_peak():
    assert spark(np.array([0, 1, 2, 4])) == " ▂▄█"
    assert spark(np.zeros(3, dtype=np.int64)) == "   "
