"""Decontamination: the eval-set loader, n-gram containment, and the AlpacaEval / Vicuna-80 check."""

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.stages.decontam import COLUMNS, decontam, load_eval_prompts
from pipeline.stages.heuristics import heuristics
from pipeline.stages.ingest import ingest
from schemas.config import DecontamConfig, HeuristicsConfig, IngestConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def rows(instructions: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"id": [str(i) for i in range(len(instructions))], "instruction": instructions}).with_columns(
        pl.lit(None, pl.String).alias(c) for c in ("drop_stage", "drop_reason", "drop_detail"))


def prompts(*items: tuple[str, str, str]) -> pl.DataFrame:
    return pl.DataFrame(list(items), schema={"benchmark": pl.String, "item": pl.String, "prompt": pl.String}, orient="row")


EVAL = prompts(("mt_bench", "question 81", "Compose an engaging travel blog post about a recent trip to Hawaii, "
                "highlighting cultural experiences and must-see attractions."),
               ("vicuna", "question 1", "How can I improve my time management skills?"),
               ("koala", "koala_9", "Tell me a joke"),
               ("mt_bench", "question 99", "Why?"))


def test_containment_whole_short_prompts_and_threshold():
    out = decontam(rows([
        "Please compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural "
        "experiences and must-see attractions. Use a friendly tone.",          # contains the whole prompt
        "Compose a travel blog post about a trip to Hawaii.",                  # shares a few words only
        "how can i improve my TIME-management skills??",                        # same words, other spelling
        "How can I improve my cooking skills?",                                  # same frame, other topic
        "Tell me a joke about cats.",                                            # short prompt, whole
        "Why? Because.",                                                         # under min_prompt_words
    ]), DecontamConfig(), EVAL)
    assert out["drop_reason"].to_list() == ["contaminated", None, "contaminated", None, "contaminated", None]
    assert out["drop_detail"][0] == "mt_bench:question 81 (overlap 1.0)"
    assert out["eval_match"].to_list()[:5] == ["mt_bench:question 81", None, "vicuna:question 1", None, "koala:koala_9"]
    assert 0 < out["eval_overlap"][1] < 0.7 and out["eval_overlap"][5] == 0.0
    assert {c: out.schema[c] for c in COLUMNS} == {c: d for c, (d, _) in COLUMNS.items()}


def test_threshold_none_records_without_dropping_and_dropped_rows_get_overlap():
    frame = rows(["How can I improve my time management skills?"] * 2).with_columns(
        drop_reason=pl.Series([None, "refusal"], dtype=pl.String))
    out = decontam(frame, DecontamConfig(threshold=None), EVAL)
    assert out["drop_reason"].to_list() == [None, "refusal"] and out["eval_overlap"].to_list() == [1.0, 1.0]
    out = decontam(frame, DecontamConfig(), EVAL)
    assert out["drop_reason"].to_list() == ["contaminated", "refusal"]
    assert out["eval_match"].to_list() == ["vicuna:question 1"] * 2


def test_ties_go_to_the_benchmark_listed_first_and_cjk_is_split_per_character():
    boiling = "What is the boiling point of water at sea level?"
    twice = prompts(("a", "1", boiling), ("b", "2", boiling), ("zh", "3", "请介绍一下中国的长城"))
    out = decontam(rows([boiling, "你好，请介绍一下中国的长城的历史"]), DecontamConfig(), twice)
    assert out["eval_match"].to_list() == ["a:1", "zh:3"]


@pytest.fixture(scope="module")
def eval_sets(request) -> dict[str, str]:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    cfg = load_config(ROOT / "data" / "configs" / "eval_sets.yaml")
    return {name: str(ROOT / path) for name, path in cfg.decontam.eval_sets.items()}


def test_loader_reads_every_shipped_eval_set(eval_sets):
    loaded = load_eval_prompts(eval_sets)
    counts = dict(loaded.group_by("benchmark").len().iter_rows())
    assert counts == {"vicuna": 80, "mt_bench": 160, "koala": 180, "wizardlm": 218, "self_instruct": 252, "alpaca_eval": 805}
    firsts = loaded.group_by("benchmark", maintain_order=True).first()
    assert firsts["item"].to_list() == ["question 1", "question 81", "koala_0", "idx 1", "user_oriented_task_0", "item 0"]
    selfinstruct = loaded.filter(pl.col("benchmark") == "self_instruct")["prompt"][0]
    assert selfinstruct.startswith("The sentence you are given might be too wordy")
    assert "\n\nIf you have any questions" in selfinstruct, "each instance's input follows its instruction"


def test_bad_eval_file_is_a_clear_error(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"text": "no prompt field here"}\n')
    with pytest.raises(ValueError, match="eval set odd .* holds no prompt"):
        load_eval_prompts({"odd": str(path)})


def test_alpaca_eval_marks_every_vicuna_prompt(eval_sets):
    """The issue's check: curating AlpacaEval with the shipped config marks all 80 Vicuna prompts,
    and names Vicuna; run after heuristics (the flow's order) the overlap is still on every row."""
    path = SHARED / "eval" / "alpaca_eval" / "gpt4_outputs.json"
    ledger, _ = ingest([path], IngestConfig())
    datasets = [r["dataset"] for r in json.loads(path.read_text(encoding="utf-8"))]
    ledger = ledger.with_columns(dataset=pl.Series([datasets[i] for i in ledger["source_index"]]))
    cfg = DecontamConfig(eval_sets=eval_sets)
    out = decontam(ledger, cfg, load_eval_prompts(eval_sets))
    vicuna = out.filter(pl.col("dataset") == "vicuna")
    assert vicuna.height == 80 and (vicuna["drop_reason"] == "contaminated").all()
    assert vicuna["drop_detail"].str.starts_with("vicuna:question ").all()
    assert (out.filter(pl.col("dataset") == "koala")["drop_reason"] == "contaminated").sum() >= 150
    chained = decontam(heuristics(ledger, HeuristicsConfig()), cfg, load_eval_prompts(eval_sets))
    assert chained.filter(pl.col("dataset") == "vicuna")["eval_match"].str.starts_with("vicuna:").all()


def test_alpaca_52k_has_few_false_hits(eval_sets):
    """Alpaca was written before these benchmarks: only whole short prompts ('What color is the sky?') match."""
    records = json.loads((SHARED / "alpaca" / "alpaca_data.json").read_text(encoding="utf-8"))
    out = decontam(rows([f"{r['instruction']}\n\n{r['input']}".strip() for r in records]),
                   DecontamConfig(eval_sets=eval_sets), load_eval_prompts(eval_sets))
    hits = out.filter(pl.col("drop_reason") == "contaminated")
    assert 0 < hits.height <= 20
    assert "What color is the sky?" in hits["instruction"].to_list()
