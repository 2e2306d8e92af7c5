"""The spine: one stage contract, a runner that keys, checks, resumes and cleans up, progress, and a layout
in which nothing below the flows imports them."""

import ast
import logging
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from pipeline import progress, runner
from pipeline.io import expand_inputs, file_sha256
from pipeline.mark import mark
from pipeline.plan import STAGES
from pipeline.stage import Deps, Stage, StageName
from pipeline.stages.ingest import combine, ingest_part
from schemas.config import ConfigError, CurationConfig, IngestConfig
from schemas.ledger import LEDGER_COLUMNS, DropReason

ROOT = Path(__file__).resolve().parents[1]


def ledger(n: int = 3) -> pl.DataFrame:
    rows = [{"instruction": f"Say {k}", "response": f"{k}", "messages": [{"role": "user", "content": f"Say {k}"}]} for k in range(n)]
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        *(pl.lit(None, dtype).alias(c) for c, (dtype, _) in LEDGER_COLUMNS.items() if c not in frame.columns)
    ).with_columns(pl.format("r{}", pl.int_range(pl.len())).alias("id")).select(*LEDGER_COLUMNS)


def first_result(tmp_path: Path, frame: pl.DataFrame) -> runner.StageResult:
    path = tmp_path / "stages" / "ingest-00000000000000ff.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return runner.StageResult("ingest", str(path), "00000000000000ff", 0.0, False, frame.height)


def toy(run, reads=None, adds=None) -> Stage:
    return Stage(StageName.PII, run, ("pii",), adds=adds or {"flag": (pl.Boolean, "toy")}, per_row=True, reads=reads)


def test_stages_run_in_the_enum_order_and_each_name_is_one_stage():
    assert [s.name for s in STAGES] == list(StageName)[1:]
    assert all(isinstance(s.name, StageName) and s.adds is not None for s in STAGES)


def test_a_stage_key_covers_its_own_code_only():
    """Editing the report (or training, or another stage) does not rerun ingest; editing ingest or its config does."""
    ingest = {str(Path(f).relative_to(ROOT)) for f in runner.code_files("pipeline.stages.ingest")}
    assert {"pipeline/stages/ingest.py", "pipeline/io.py", "schemas/config/ingest.py", "schemas/record.py"} <= ingest
    assert not any(f.startswith(("pipeline/report/", "pipeline/train/", "flows/")) or f.endswith("score.py") for f in ingest)
    score = {str(Path(f).relative_to(ROOT)) for f in runner.code_files("pipeline.stages.score")}
    assert "pipeline/train/model.py" in score  # a lazy import inside a function is still the stage's code
    cfg = CurationConfig()
    base = runner.stage_key("in", "pii", ("pii",), cfg, "pipeline.stages.pii")
    assert base == runner.stage_key("in", "pii", ("pii",), cfg.model_copy(update={"dedup": cfg.dedup.model_copy(update={"threshold": 0.6})}), "pipeline.stages.pii")
    assert base != runner.stage_key("in", "pii", ("pii",), cfg.model_copy(update={"pii": cfg.pii.model_copy(update={"action": "flag"})}), "pipeline.stages.pii")
    assert base != runner.stage_key("other input", "pii", ("pii",), cfg, "pipeline.stages.pii")
    assert base != runner.stage_key("in", "pii", ("pii",), cfg, "pipeline.stages.dedup")


def test_columns_are_checked_on_entry_and_exit(tmp_path):
    deps, cfg = Deps(CurationConfig()), CurationConfig()
    previous = first_result(tmp_path, ledger())
    good = toy(lambda f, c, d: f.with_columns(pl.lit(True).alias("flag")))
    result = runner.run_stage(good, previous, cfg, tmp_path, deps)
    assert pl.read_parquet(result.path)["flag"].all()
    with pytest.raises(runner.StageContractError, match="needs columns it did not get: quality"):
        runner.run_stage(toy(good.run, reads=("quality",)), previous, cfg, tmp_path / "a", deps)
    with pytest.raises(runner.StageContractError, match="declares columns it did not get: flag"):
        runner.run_stage(toy(lambda f, c, d: f), previous, cfg, tmp_path / "b", deps)
    with pytest.raises(runner.StageContractError, match=r"flag \(Int32, not Boolean\)"):
        runner.run_stage(toy(lambda f, c, d: f.with_columns(pl.lit(1, pl.Int32).alias("flag"))), previous, cfg, tmp_path / "c", deps)
    with pytest.raises(runner.StageContractError, match="never drop them"):
        runner.run_stage(toy(lambda f, c, d: f.head(1).with_columns(pl.lit(True).alias("flag"))), previous, cfg, tmp_path / "d", deps)


def test_a_whole_set_stage_is_given_only_what_it_reads_and_the_rest_of_each_row_is_kept(tmp_path):
    deps, cfg, seen = Deps(CurationConfig()), CurationConfig(), []

    def run(frame, c, d):
        seen.append(frame.columns)
        return mark(frame.with_columns(pl.col("response").str.len_chars().cast(pl.Int32).alias("length")),
                    pl.col("id") == "r1", StageName.SEMANTIC, DropReason.SEMANTIC_DUPLICATE, "toy")

    def stage(run, reads=("response",)):
        return Stage(StageName.SEMANTIC, run, ("semantic",), adds={"length": (pl.Int32, "toy")}, per_row=False, reads=reads)

    before = ledger()
    result = runner.run_stage(stage(run), first_result(tmp_path, before), cfg, tmp_path, deps)
    assert seen == [["id", "response", "drop_stage", "drop_reason", "drop_detail"]]  # in the file's order
    after = pl.read_parquet(result.path)
    assert after.columns == [*before.columns, "length"] and result.alive == 2
    assert after.drop("length", "drop_stage", "drop_reason", "drop_detail").equals(before.drop("drop_stage", "drop_reason", "drop_detail"))
    assert after["drop_reason"].to_list() == [None, str(DropReason.SEMANTIC_DUPLICATE), None] and after["length"].to_list() == [1, 1, 1]
    with pytest.raises(runner.StageContractError, match="needs columns it did not get: quality"):
        runner.run_stage(stage(run, reads=("quality",)), first_result(tmp_path / "a", before), cfg, tmp_path / "a", deps)
    with pytest.raises(runner.StageContractError, match="in another order"):
        runner.run_stage(stage(lambda f, c, d: run(f, c, d).reverse()), first_result(tmp_path / "b", before), cfg, tmp_path / "b", deps)


def test_shards_joined_are_the_rows_in_order(tmp_path):
    frame = ledger(7)
    shards = runner.split(first_result(tmp_path, frame), tmp_path, rows=3)
    assert [pl.read_parquet(s.path).height for s in shards] == [3, 3, 1]
    assert pl.read_parquet(runner.join(shards, tmp_path).path).equals(frame)


def test_whole_set_stages_decide_from_their_columns_what_they_decide_from_every_column(tmp_path, length_scorer):
    """Each whole-set stage's `reads` is complete: run on the sample, the merged output of every one equals
    what the stage makes of the full rows (a column it reads but does not name would change a decision)."""
    cfg = CurationConfig.model_validate({"language": {"backend": "fasttext"}, "select": {"budget": 40}})
    deps = replace(runner.preflight(cfg), load_scorer=lambda: length_scorer)
    log = logging.getLogger("test")
    parts = [runner.ingest_part(str(f), file_sha256(f), cfg, tmp_path, log) for f in expand_inputs([str(ROOT / "data" / "sample")])]
    previous, whole_set = runner.combine_parts(parts, tmp_path, log).stage, 0
    for stage in STAGES:
        full = stage.run(pl.read_parquet(previous.path), cfg, replace(deps, run_dir=tmp_path)) if stage.reads is not None else None
        previous = runner.run_stage(stage, previous, cfg, tmp_path, deps)
        if full is not None:
            whole_set += 1
            merged = pl.read_parquet(previous.path)  # the columns in the file's order, so compared by name
            assert sorted(merged.columns) == sorted(full.columns) and merged.select(full.columns).equals(full), stage.name
    assert whole_set == sum(not s.per_row for s in STAGES) == 6
    assert pl.read_parquet(previous.path)["selected"].sum() == 40


def test_a_finished_stage_is_reused_and_stale_outputs_are_cleaned_up(tmp_path):
    deps, cfg, calls = Deps(CurationConfig()), CurationConfig(), []

    def run(frame, c, d):
        calls.append(1)
        return frame.with_columns(pl.lit(False).alias("flag"))

    previous = first_result(tmp_path, ledger())
    first = runner.run_stage(toy(run), previous, cfg, tmp_path, deps)
    again = runner.run_stage(toy(run), previous, cfg, tmp_path, deps)
    assert calls == [1] and again.resumed and again.path == first.path and again.alive == 3
    stale = tmp_path / "stages" / "pii-0123456789abcdef.parquet"
    stale.write_bytes(b"old")
    assert runner.cleanup(tmp_path, [previous.key, first.key]) == [stale]
    assert sorted(p.name for p in (tmp_path / "stages").iterdir()) == sorted([Path(previous.path).name, Path(first.path).name])


def test_ingest_parts_combine_into_one_ledger_with_ids_across_files(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"instruction": "Name a colour", "output": "Blue"}\n{"broken\n')
    b.write_text('{"instruction": "Name a colour", "output": "Blue"}\n')
    ledger_rows, quarantine, read = combine([ingest_part(p, IngestConfig()) for p in (a, b)])
    assert ledger_rows["id"].to_list() == [ledger_rows["content_hash"][0], ledger_rows["content_hash"][0] + "-1"]
    assert quarantine.height == 1 and read["records"].to_list() == [2, 1]
    assert ledger_rows.columns == list(LEDGER_COLUMNS)


def test_preflight_turns_a_bad_eval_set_into_one_config_error(tmp_path):
    bad = tmp_path / "eval.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(ConfigError, match="eval set mine"):
        runner.preflight(CurationConfig(decontam={"eval_sets": {"mine": str(bad)}}))
    with pytest.raises(ConfigError, match="do not exist"):
        runner.preflight(CurationConfig(decontam={"eval_sets": {"mine": str(tmp_path / "missing.jsonl")}}))


def test_drops_name_their_stage_from_the_enum():
    from pipeline.mark import mark

    frame = ledger(2)
    out = mark(frame, pl.col("id") == "r1", StageName.PII, DropReason.PII, "found email")
    assert out["drop_stage"].to_list() == [None, "pii"]


class Recorder:
    def __init__(self):
        self.events = []

    def started(self, stage):
        self.events.append(("started", stage))

    def advanced(self, stage, done, total, unit):
        self.events.append(("advanced", stage, done, total))

    def finished(self, stage, summary):
        self.events.append(("finished", stage))


def test_progress_reaches_the_installed_reporter_and_the_log(tmp_path, caplog):
    def run(frame, cfg, deps):
        counter = deps.progress("pii").start(frame.height, "texts")
        for _ in range(frame.height):
            counter.advance(1)
        return frame.with_columns(pl.lit(True).alias("flag"))

    log = logging.getLogger("winnow.test")
    with caplog.at_level(logging.INFO, logger="winnow.test"), progress.reporting(Recorder()) as seen:
        runner.run_stage(toy(run), first_result(tmp_path, ledger()), CurationConfig(), tmp_path, Deps(CurationConfig(), log=log))
    assert seen.events[0] == ("started", "pii") and seen.events[-1] == ("finished", "pii")
    assert ("advanced", "pii", 3, 3) in seen.events
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("pii: 3 of 3 texts (100%)") and "left" in m for m in said)
    assert any(m.startswith("pii: 3 of 3 alive rows kept") for m in said)
    assert progress._reporter is None  # the block restored the quiet default


def test_nothing_below_the_flows_imports_them():
    for path in [*ROOT.glob("pipeline/**/*.py"), *ROOT.glob("schemas/**/*.py")]:
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert not [m for m in names if m.split(".")[0] == "flows"], path
