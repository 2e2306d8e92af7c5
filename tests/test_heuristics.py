"""Heuristics: every rule on real records from ../shared/data, the quality score, the signals."""

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.stages.heuristics import COLUMNS, heuristics
from pipeline.stages.heuristics_signals import char_counts, repeated_line_share, repeated_ngram_share
from pipeline.stages.ingest import ingest
from schemas.config import ConfigError, HeuristicsConfig, IngestConfig, parse_config

DEFAULT = HeuristicsConfig()


@pytest.fixture(scope="module")
def alpaca(request) -> list[dict]:
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca" / "alpaca_data.json"
    if not path.is_file():
        pytest.skip("../shared/data is not present")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def gpt4(request) -> list[dict]:
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "alpaca_eval" / "gpt4_outputs.json"
    if not path.is_file():
        pytest.skip("../shared/data is not present")
    return json.loads(path.read_text(encoding="utf-8"))


def find(records: list[dict], field: str, text: str) -> dict:
    """The first real record whose `field` contains `text` (or equals it, for short texts)."""
    return next(r for r in records if (r[field] == text if len(text) < 12 else text in r[field]))


def ledger(tmp_path: Path, records: list[dict]) -> pl.DataFrame:
    path = tmp_path / f"records{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    frame, quarantine = ingest([path], IngestConfig())
    assert quarantine.height == 0
    return frame


def verdicts(tmp_path, records, cfg=DEFAULT) -> list[tuple[str | None, str | None]]:
    out = heuristics(ledger(tmp_path, records), cfg).sort("source_index")
    return list(zip(out["drop_reason"], out["drop_detail"]))


CASES = [  # (reason, field, real text that identifies the record, evidence expected in the detail)
    ("empty_response", "output", "", "empty"),
    ("short_response", "instruction", "Predict the next musical note given the musical sequence.", "1 chars < 2"),
    ("placeholder", "output", "<nooutput>", "<nooutput>"),
    ("refusal", "output", "Sorry, the task requires a visual output which cannot be generated", "Sorry, the task"),
    ("refusal", "output", "This instruction cannot be completed by a GPT language model.", "This instruction cannot"),
    ("unsupported_modality", "input", "[Photo of a bridge in the forest]", "photo"),
    ("unsupported_modality", "input", "https://www.inc.com/sujan-patel/handling-failure", "article"),
    ("unsupported_modality", "instruction", "Describe what you see in this photo.", "this photo"),
    ("echo", "instruction", "Create a looping GIF of a cat running.", "repeats the instruction"),
    ("echo", "instruction", "Deleted the second-to-last sentence of this paragraph.", "input"),
    ("repetition", "instruction", "Repeat the input 5 times.", "repeated line share 0.8"),
    ("repetition", "output", "C D D D D D D D D D D E E", "repeated 3-gram share"),
    ("low_alpha", "output", "The man went to the store.  ̦̦̦̦", "letters and digits are"),
    ("low_alpha", "instruction", "Convert the following sentence to Morse code.", "0.0 of visible"),
    ("truncated", "output", "The numerical value of the equation is", "equation is"),
    ("truncated", "output", "4 multiplied by 5 is equal to", "equal to"),
]


@pytest.mark.parametrize("reason,field,text,evidence", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_on_real_alpaca_record(tmp_path, alpaca, reason, field, text, evidence):
    [(got, detail)] = verdicts(tmp_path, [find(alpaca, field, text)])
    assert got == reason and evidence in detail


def test_good_records_and_near_misses_stay(tmp_path, alpaca):
    """Clean answers, and texts that look like a rule but are not: an apology written on request, a
    fact about OpenAI, a letter's sign-off, a corrected sentence differing from its input by a period,
    a one-digit answer to a sum, and Alpaca records whose input says there is none ('N/A', '<noinput>')."""
    keep = [alpaca[0], alpaca[1], alpaca[2],
            find(alpaca, "output", "I'm sorry to hear that. It must be very difficult for you."),
            find(alpaca, "output", "GPT-3 is an advanced autoregressive language model developed by OpenAI"),
            find(alpaca, "instruction", "Write a memo to inform employees about the new dress code policy."),
            find(alpaca, "instruction", "Add a punctuation mark to the sentence to make it valid."),
            find(alpaca, "output", "I don't have a pen."),
            find(alpaca, "instruction", "Calculate the average of the numbers in this list: 8, 6, 5, 9"),
            next(r for r in alpaca if r["input"] == "N/A" and len(r["output"]) > 40),
            find(alpaca, "instruction", "How does the aging process affect the heart?")]
    assert verdicts(tmp_path, keep) == [(None, None)] * len(keep)


def test_placeholder_line_in_a_prompt_is_dropped(tmp_path, alpaca):
    """Outside Alpaca's input field (which ingest reads as 'no input'), a placeholder line is junk."""
    record = find(alpaca, "instruction", "How does the aging process affect the heart?")
    chat = {"messages": [{"role": "user", "content": f"{record['instruction']}\n\n<noinput>"},
                         {"role": "assistant", "content": record["output"]}]}
    [(reason, detail)] = verdicts(tmp_path, [chat])
    assert reason == "placeholder" and "<noinput>" in detail


def test_refusal_and_identity_in_gpt4_answers(tmp_path, gpt4):
    """GPT-4 answers from AlpacaEval: a disclaimer is a refusal; a knowledge cutoff is model identity."""
    records = [{"instruction": r["instruction"], "input": "", "output": r["output"]} for r in (
        find(gpt4, "instruction", "Is the US border open to Canada?"),
        find(gpt4, "instruction", "Who is the President of Germany?"),
        find(gpt4, "instruction", "What's the current date?"))]
    got = verdicts(tmp_path, records)
    assert [r for r, _ in got] == ["refusal", "model_identity", "model_identity"]
    assert "As an AI language model," in got[0][1] and "knowledge update" in got[1][1]


def test_unbalanced_code_fence_in_a_cut_response(tmp_path, alpaca):
    """A real answer with a code block, and the same answer cut before its closing fence."""
    whole = find(alpaca, "instruction", "Generate the code to print a list of integers from 1 to 10")
    cut = dict(whole, output=whole["output"].rsplit("```", 1)[0])
    assert verdicts(tmp_path, [whole, cut]) == [(None, None), ("unbalanced_code", "``` fences: 0 in instruction, 1 in response")]


def test_length_limits_on_real_records(tmp_path, alpaca):
    long_answer = max(alpaca, key=lambda r: len(r["output"]))
    atom = find(alpaca, "instruction", "Describe the structure of an atom.")
    got = verdicts(tmp_path, [long_answer, atom], HeuristicsConfig(max_response_words=100))
    assert got[0][0] == "long_response" and got[0][1].startswith("response has ") and got[0][1].endswith("words > 100")
    assert got[1] == (None, None)
    topics = find(alpaca, "instruction", "Generate a list of conversation topics for my date.")
    assert verdicts(tmp_path, [topics], HeuristicsConfig(max_instruction_chars=40)) == [
        ("long_instruction", "instruction has 51 chars > 40")]


def test_first_rule_wins_and_none_turns_a_rule_off(tmp_path, alpaca):
    record = find(alpaca, "output", "Sorry, the task requires a visual output which cannot be generated")
    assert verdicts(tmp_path, [record], HeuristicsConfig(refusal_patterns=None)) == [(None, None)]
    both = find(alpaca, "output", "<nooutput> This type of instruction cannot be fulfilled by a GPT model.")
    assert verdicts(tmp_path, [both])[0][0] == "placeholder"
    assert verdicts(tmp_path, [both], HeuristicsConfig(placeholder_patterns=None))[0][0] == "refusal"


def test_alpaca_52k(alpaca):
    """The whole set: every row kept, signals typed as documented, a few percent dropped, quality in [0, 1]."""
    frame = pl.DataFrame({
        "id": [str(i) for i in range(len(alpaca))],
        "instruction": [f"{r['instruction']}\n\n{r['input']}".strip() for r in alpaca],
        "response": [r["output"].strip() for r in alpaca],
    }).with_columns(pl.lit(None, pl.String).alias(c) for c in ("drop_stage", "drop_reason", "drop_detail"))
    out = heuristics(frame, DEFAULT)
    assert out.height == len(alpaca) and out["id"].to_list() == frame["id"].to_list()
    assert {c: out.schema[c] for c in COLUMNS} == {c: dtype for c, (dtype, _) in COLUMNS.items()}
    dropped = out.filter(pl.col("drop_reason").is_not_null())
    assert 0.01 < dropped.height / out.height < 0.05
    assert set(dropped["drop_stage"]) == {"heuristics"} and dropped["drop_detail"].null_count() == 0
    assert out["quality"].is_between(0, 1).all()
    alive = out.filter(pl.col("drop_reason").is_null())
    assert dropped["quality"].mean() < alive["quality"].mean()
    assert heuristics(frame, DEFAULT).equals(out)


def test_quality_prefers_full_clean_answers(tmp_path, alpaca):
    short = find(alpaca, "output", "Tough")
    full = alpaca[2]  # the structure of an atom, three sentences
    clean, terse = heuristics(ledger(tmp_path, [full, short]), DEFAULT).sort("source_index")["quality"]
    assert 0.5 < clean <= 1 and terse < 0.3


def test_signals_on_several_scripts():
    texts = pl.Series(["Hello, wörld! 123", "", None, "中文 测试", "…—“”", "x ̦̦̦̦"])
    counts = char_counts(texts, chunk_rows=2)
    assert counts["visible"].to_list() == [15, 0, 0, 4, 4, 5]
    assert counts["alnum"].to_list() == [13, 0, 0, 4, 0, 1]
    assert counts["words"].to_list() == [3, 0, 0, 4, 1, 2]
    loops = pl.Series(["a b a b a b a b", "one two three four five six", "x\nx\ny\nx\n\nx"])
    words = char_counts(loops)["words"]
    assert repeated_ngram_share(loops, words, 2, 4).to_list() == pytest.approx([5 / 7, 0.0, 1 / 4])
    assert repeated_ngram_share(loops, words, 2, 10).to_list() == [0.0, 0.0, 0.0]
    assert repeated_line_share(loops).to_list() == pytest.approx([0.0, 0.0, 3 / 5])


def test_bad_pattern_is_a_config_error():
    with pytest.raises(ConfigError, match="heuristics.refusal_patterns.*look-around"):
        parse_config({"heuristics": {"refusal_patterns": ["(?<!x)sorry"]}})
