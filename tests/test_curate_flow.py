"""The curate flow end to end (Prefect ephemeral mode), resumability, and the CLI."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from flows.curate import curate
from pipeline.plan import STAGES
from schemas.config import CurationConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


def outputs(run: Path) -> dict[str, bytes]:
    names = ("ledger.parquet", "curated.parquet", "quarantine.parquet", "embeddings.parquet", "dedup_index.parquet")
    return {name: (run / name).read_bytes() for name in names}


def test_sample_run_accounts_for_every_record_and_resumes(tmp_path, caplog):
    run = tmp_path / "run"
    manifest = curate(inputs=[str(SAMPLE)], out=str(run), config=CurationConfig())
    c = manifest["counts"]
    assert c["input"] == c["curated"] + c["rejected"] + c["quarantined"]
    assert c["quarantined"] >= 4 and 50 < c["curated"] <= 1000
    planted = {"empty_response", "refusal", "model_identity", "truncated", "placeholder", "echo"}
    assert planted <= set(c["by_reason"]["heuristics"]) and sum(c["by_reason"]["dedup"].values()) >= 15 + 13
    ledger = pl.read_parquet(run / "ledger.parquet")
    quarantine = pl.read_parquet(run / "quarantine.parquet")
    assert ledger.height + quarantine.height == c["input"]
    assert ledger["id"].is_unique().all()
    assert set(ledger["status"]) <= {"curated", "rejected"}
    rejected = ledger.filter(pl.col("status") == "rejected")
    assert rejected["drop_stage"].null_count() == 0 and rejected["drop_reason"].null_count() == 0
    on_disk = json.loads((run / "manifest.json").read_text())
    assert on_disk["counts"] == c and len(on_disk["inputs"]) == 4 and all(len(i["sha256"]) == 64 for i in on_disk["inputs"])
    assert on_disk["packages"]["polars"] and [s["name"] for s in on_disk["stages"]] == ["ingest", *(stage.name for stage in STAGES)]
    assert [r["source"] for r in on_disk["read"]] == [i["path"] for i in on_disk["inputs"]]
    assert on_disk["counts"]["read"]["records"] == sum(r["records"] for r in on_disk["read"]) <= c["input"]
    curated = pl.read_parquet(run / "curated.parquet")
    assert curated["selection_rank"].to_list() == list(range(1, c["curated"] + 1))
    assert on_disk["diversity"]["curated"]["n"] == on_disk["diversity"]["random_sample"]["n"] == c["curated"]
    assert (run / "report.html").stat().st_size > 10_000 and pl.read_parquet(run / "dedup_index.parquet").height == c["curated"]
    first = outputs(run)
    again = curate(inputs=[str(SAMPLE)], out=str(run), config=CurationConfig())
    assert all(stage["resumed"] for stage in again["stages"])
    assert outputs(run) == first
    assert not list(run.rglob("*.tmp"))


def test_fresh_runs_with_model_scores_choose_byte_identical_sets(tmp_path):
    """Same input, config and seed: the same curated set, scored by SmolLM2 and chosen by quality x coverage."""
    config = CurationConfig.model_validate({"select": {"budget": 30}})
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        curate(inputs=[str(SAMPLE)], out=str(run), config=config)
    ledger = pl.read_parquet(runs[0] / "ledger.parquet")
    pool = ledger.filter(pl.col("selection_score").is_not_null())
    assert pool.height == 45 and pool["answer_nll"].null_count() == 0 and ledger.filter(pl.col("selected")).height == 30
    assert (pool["ifd"] < 1).mean() > 0.8  # the prompt helps predict most answers
    reasons = pl.read_parquet(runs[0] / "curated.parquet")["selection_reason"]
    assert reasons.str.contains("answer_nll_alone").all() and reasons.str.contains("coverage gain").all()
    for name in ("curated.parquet", "ledger.parquet"):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes()


def test_curated_parquet_loads_in_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    run = tmp_path / "run"
    curate(inputs=[str(SAMPLE / "openai.jsonl")], out=str(run), config=CurationConfig())
    ds = datasets.load_dataset("parquet", data_files=str(run / "curated.parquet"), split="train")
    row = ds[0]
    assert row["messages"][-1]["role"] == "assistant"
    assert row["prompt"] + row["completion"] == row["messages"]


def test_cli_reports_bad_config_and_input_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("select:\n  budget: zero\n")
    cli = [sys.executable, "-m", "flows.cli", "curate"]
    proc = subprocess.run([*cli, str(SAMPLE), "--out", str(tmp_path / "r"), "--config", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "select.budget" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([*cli, str(tmp_path / "missing"), "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 2 and "missing" in proc.stderr and "Traceback" not in proc.stderr
    missing = tmp_path / "nowhere.jsonl"
    bad.write_text(f"decontam:\n  eval_sets:\n    mt_bench: {missing}\n")
    proc = subprocess.run([*cli, str(SAMPLE), "--out", str(tmp_path / "r"), "--config", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and str(missing) in proc.stderr.replace("\n", "") and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def bad_files(folder: Path) -> dict[str, int]:
    """Broken files with good records among them; name -> good records each holds."""
    folder.mkdir()
    good = [{"instruction": f"Name a fruit that starts with the letter {c}.", "output": f"A fruit starting with {c}: see the list."} for c in "ABCDEF"]
    lines = [json.dumps(r) for r in good]
    (folder / "surrogate.jsonl").write_text("\n".join([lines[0], '{"instruction": "Bad \\ud800", "output": "x"}', lines[1]]))
    whole = gzip.compress(("\n".join(lines[2:] * 400)).encode())
    (folder / "cut.jsonl.gz").write_bytes(whole[: len(whole) * 3 // 4])
    (folder / "empty.jsonl").write_bytes(b"")
    (folder / "binary.json").write_bytes(bytes(range(256)) * 4)
    (folder / "garbage.parquet").write_bytes(b"PAR1 not parquet")
    (folder / "utf16.jsonl").write_bytes("\n".join(lines[:2]).encode("utf-16"))
    return {"surrogate.jsonl": 2, "utf16.jsonl": 2}


def test_cli_bad_files_among_good_ones_keep_the_good_records(tmp_path):
    bad = bad_files(tmp_path / "bad")
    config = tmp_path / "fast.yaml"
    fast = {"language": {"enabled": False}, "semantic": {"threshold": None}, "category": {"prototype_similarity": None}, "select": {"budget": 40}}
    if "score" in CurationConfig.model_fields:
        fast["score"] = {"enabled": False}
    config.write_text(json.dumps(fast))  # JSON is YAML
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "curate", str(SAMPLE / "alpaca.json"), str(tmp_path / "bad"),
                           "--out", str(run), "--config", str(config)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    manifest = json.loads((run / "manifest.json").read_text())
    ledger, quarantine = pl.read_parquet(run / "ledger.parquet"), pl.read_parquet(run / "quarantine.parquet")
    read = {Path(r["source"]).name: r for r in manifest["read"]}
    assert set(read) == {"alpaca.json", *(p.name for p in (tmp_path / "bad").iterdir())}
    by_file = ledger.group_by(pl.col("source").str.split("/").list.last()).len()
    kept = dict(by_file.iter_rows())
    assert kept["alpaca.json"] == read["alpaca.json"]["ledger_rows"] > 150
    assert all(kept[name] == n for name, n in bad.items()) and kept["cut.jsonl.gz"] > 400
    notes = quarantine.filter(pl.col("stage") == "read")["error"].to_list()
    assert any("empty" in e for e in notes) and any("cut short" in e for e in notes) and any("garbage.parquet" in e for e in notes)
    c = manifest["counts"]
    assert c["input"] == c["curated"] + c["rejected"] + c["quarantined"] == ledger.height + quarantine.height
    assert c["read"]["records"] == sum(r["records"] for r in manifest["read"])


def test_cli_unexpected_failure_is_one_line_and_a_saved_traceback(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import flows.curate
    from flows.cli import app

    def broken(**_):
        raise RuntimeError("counts do not add up: x.jsonl: read 3 records, the ledger and quarantine account for 2\nmore")

    monkeypatch.setattr(flows.curate, "curate", broken)
    result = CliRunner().invoke(app, ["curate", str(SAMPLE / "alpaca.json"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "curate failed: RuntimeError: counts do not add up" in result.output.replace("\n", " ")
    assert "RuntimeError" in (tmp_path / "r" / "error.log").read_text()
    result = CliRunner().invoke(app, ["curate", "--out", str(tmp_path / "r2")])
    assert result.exit_code == 2 and "no input" in result.output


@pytest.mark.parametrize(("given", "seen"), [(None, "1"), ("0", "0")])
def test_every_flow_entry_point_is_offline_unless_the_user_allows_the_hub(given, seen):
    """Models and datasets load from local files by default, for the CLI and for flows a Prefect worker imports
    alone; a user's HF_HUB_OFFLINE=0 is kept, so hub names still work where a network exists."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"} | ({"HF_HUB_OFFLINE": given} if given else {})
    for module in ("flows.curate", "flows.train", "flows.cli"):
        code = f"import os, {module}; print(os.environ['HF_HUB_OFFLINE'])"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True).stdout
        assert out.strip() == seen, module
