"""Ingest and validate: every format, every quarantine path, stable ids."""

import gzip
import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.export import counts, finalize
from pipeline.io import InputError, expand_inputs
from pipeline.normalize import normalize_text
from pipeline.stages.ingest import ingest, ingest_counted
from schemas.config import IngestConfig


def run(*paths, **cfg):
    return ingest([Path(p) for p in paths], IngestConfig(**cfg))


def write(path: Path, rows: list, jsonl: bool = False) -> Path:
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) if jsonl else json.dumps(rows, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    return path


FORMATS = {
    "alpaca": ({"instruction": "Add", "input": "2 and 3", "output": "5"}, "Add\n\n2 and 3", "5"),
    "dolly": ({"instruction": "Who?", "context": "Ada wrote code.", "response": "Ada.", "category": "closed_qa"}, "Who?\n\nAda wrote code.", "Ada."),
    "sharegpt": ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}, "Hi", "Hello"),
    "openai": ({"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"},
                             {"role": "assistant", "content": "Hello"}]}, "Hi", "Hello"),
    "prompt_completion": ({"prompt": "Say yes", "completion": "Yes"}, "Say yes", "Yes"),
    "lima": ({"conversations": ["Q1", "A1", "Q2", "A2"]}, "Q1\n\nQ2", "A1\n\nA2"),
    "self_instruct": ({"instruction": "Antonym?", "instances": [{"input": "hot", "output": "cold"}]}, "Antonym?\n\nhot", "cold"),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_becomes_a_conversation(tmp_path, fmt):
    record, instruction, response = FORMATS[fmt]
    ledger, quarantine = run(write(tmp_path / "in.jsonl", [record], jsonl=True))
    assert quarantine.height == 0
    row = ledger.row(0, named=True)
    assert (row["format"], row["instruction"], row["response"]) == (fmt, instruction, response)
    assert row["messages"][-1]["role"] == "assistant"


def test_multi_turn_kept_whole(tmp_path):
    turns = [{"from": w, "value": f"{w} {i}"} for i in range(3) for w in ("human", "gpt")]
    ledger, _ = run(write(tmp_path / "c.json", [{"conversations": turns}]))
    assert ledger["n_turns"].to_list() == [3]
    assert [m["role"] for m in ledger["messages"][0]] == ["user", "assistant"] * 3


def test_dolly_category_is_given(tmp_path):
    ledger, _ = run(write(tmp_path / "d.jsonl", [FORMATS["dolly"][0]], jsonl=True))
    assert ledger.select("category", "category_source").row(0) == ("closed_qa", "given")


def test_parquet_csv_gzip_and_tsv(tmp_path):
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(3)]
    pl.DataFrame(rows).write_parquet(tmp_path / "a.parquet")
    pl.DataFrame(rows).write_csv(tmp_path / "b.csv")
    pl.DataFrame(rows).write_csv(tmp_path / "c.tsv", separator="\t")
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress("\n".join(json.dumps(r) for r in rows).encode()))
    ledger, quarantine = run(*sorted(tmp_path.iterdir()))
    assert quarantine.height == 0 and ledger.height == 12
    assert ledger.group_by("source").len()["len"].to_list() == [3, 3, 3, 3]


def test_field_map_handles_other_shapes(tmp_path):
    path = write(tmp_path / "b.jsonl", [{"question": "2+2?", "std_answer": "4", "class": "math"}], jsonl=True)
    ledger, quarantine = run(path, field_map={"instruction": "question", "output": "std_answer", "category": "class"})
    assert quarantine.height == 0
    assert ledger.select("instruction", "response", "category").row(0) == ("2+2?", "4", "math")
    _, unmapped = run(path)
    assert "field_map" in unmapped["error"][0]


def test_ids_stable_unique_and_content_based(tmp_path):
    rec = {"instruction": "Hi  ", "input": "", "output": "Hello\r\n"}
    a = write(tmp_path / "a.json", [rec, rec, {"instruction": "Other", "output": "x"}])
    b = write(tmp_path / "b.json", [{"instruction": "Hi", "output": "Hello"}])
    ledger, _ = run(a, b)
    ids = ledger["id"].to_list()
    assert len(set(ids)) == 4
    assert ids[1] == ids[0] + "-1" and ids[3] == ids[0] + "-2"  # same normalised conversation
    again, _ = run(a, b)
    assert again["id"].to_list() == ids


def test_wrong_types_are_quarantined_with_field(tmp_path):
    path = write(tmp_path / "a.json", [{"instruction": "ok", "output": "fine"}, {"instruction": "n", "output": 56},
                                       {"instruction": ["x"], "output": "y"}, "just a string", {"instruction": "no output"}])
    ledger, q = run(path)
    assert ledger.height == 1
    assert q["stage"].to_list() == ["validate"] * 4
    assert q["source_index"].to_list() == [1, 2, 3, 4]
    assert q["error"][0].startswith("output:") and "56" in q["raw"][0]
    assert "expected a JSON object" in q["error"][2]


def test_truncated_array_keeps_complete_records(tmp_path):
    rows = [{"instruction": f"q{i}", "output": "a" * 50} for i in range(5)]
    text = json.dumps(rows)
    path = tmp_path / "t.json"
    path.write_text(text[: text.index("q4") + 10])
    ledger, q = run(path)
    assert ledger.height == 4
    assert q.height == 1 and q["source_index"][0] == 4 and "unreadable JSON" in q["error"][0]
    assert q["raw"][0].startswith('{"instruction": "q4')


def test_trailing_comma_keeps_records_and_reports_spot(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('[{"instruction": "a", "output": "b"},\n {"instruction": "c", "output": "d"},\n]')
    ledger, q = run(path)
    assert ledger.height == 2 and q.height == 1 and "trailing comma" in q["error"][0]


def test_bad_jsonl_lines_and_bad_utf8(tmp_path):
    good = json.dumps({"instruction": "a", "output": "b"}).encode()
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\n".join([good, b'{"instruction": "cut', b"\xff\xfe\xfa garbage", good]))
    ledger, q = run(path)
    assert ledger.height == 2
    assert q["stage"].to_list() == ["parse", "parse"]
    assert "line 2" in q["error"][0] and "not UTF-8" in q["error"][1]


@pytest.mark.parametrize("content,needle", [(b"", "empty"), (b"\x00\x01\xff binary", "not UTF-8"), (b"[1, 2", "not closed")])
def test_unreadable_files_are_one_quarantine_row(tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    ledger, q = run(path)
    assert ledger.height == 0
    assert q.height >= 1 and any(needle in e for e in q["error"])


def test_utf16_with_bom_is_read(tmp_path):
    path = tmp_path / "u.json"
    path.write_bytes(json.dumps([{"instruction": "héllo", "output": "wörld"}], ensure_ascii=False).encode("utf-16"))
    ledger, q = run(path)
    assert q.height == 0 and ledger["instruction"][0] == "héllo"


def test_csv_ragged_row_is_quarantined(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("instruction,input,output\nq,,a\n\"x\",y\n")
    ledger, q = run(path)
    assert ledger.height == 1 and q.height == 1 and "2 fields" in q["error"][0]


def test_sharegpt_replies_to_a_lost_message_are_skipped_unless_asked_not_to(tmp_path):
    turns = [{"from": "system", "value": "Be brief."}, {"from": "gpt", "value": "...as I said."},
             {"from": "human", "value": "Why?"}, {"from": "gpt", "value": "Because."}]
    path = tmp_path / "orphan.json"
    path.write_text(json.dumps([{"conversations": turns}]))
    ledger, q = run(path)
    assert q.height == 0 and [m["role"] for m in ledger["messages"][0]] == ["system", "user", "assistant"]
    ledger, q = run(path, skip_leading_replies=False)
    assert ledger.height == 0 and "must start with a user turn" in q["error"][0]


def test_an_input_that_says_there_is_none_is_empty(tmp_path):
    rows = [{"instruction": "Name a colour.", "input": marker, "output": "Blue."} for marker in ("<noinput>", "No input", "N/A", "")]
    rows.append({"instruction": "Name a colour.", "input": "None of the primary ones.", "output": "Green."})
    ledger, q = run(write(tmp_path / "a.json", rows))
    assert q.height == 0 and ledger["instruction"].to_list() == ["Name a colour."] * 4 + ["Name a colour.\n\nNone of the primary ones."]
    assert ledger["id"].to_list()[1:4] == [f"{ledger['id'][0]}-{i}" for i in (1, 2, 3)], "one conversation, four spellings"


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="nope"):
        expand_inputs([str(tmp_path / "nope")])


def test_real_malformed_files(shared_data):
    sharegpt = shared_data / "malformed" / "sharegpt_truncated.json"
    ledger, q = run(sharegpt)
    tail = q.filter(pl.col("stage") == "parse")
    assert tail.height == 1 and "end of file" in tail["error"][0]
    complete = tail["source_index"][0]  # records before the cut
    assert ledger["source_index"].n_unique() + q.filter(pl.col("stage") == "validate").height == complete
    assert q.filter(pl.col("stage") == "validate").height < 20, "replies to a lost first message are skipped"
    strict, sq = run(sharegpt, skip_leading_replies=False)
    orphans = sq.filter(pl.col("error").str.contains("must start with a user turn"))
    only_replies = set(q.filter(pl.col("error").str.contains("only replies"))["source_index"])
    assert orphans.height > 150 and set(orphans["source_index"]) <= set(ledger["source_index"]) | only_replies
    zh, zq = run(shared_data / "malformed" / "alpaca_zh_trailing_comma.json")
    assert zh.height > 2500 and zq.height == 1 and "trailing comma" in zq["error"][0]


def test_real_formats(shared_data):
    seed, q = run(shared_data / "self_instruct" / "seed_tasks.jsonl")
    assert (seed.height, q.height, seed["format"][0]) == (175, 0, "self_instruct")
    belle, q = run(shared_data / "multilingual" / "belle" / "eval_eval_set.json",
                   field_map={"instruction": "question", "output": "std_answer", "category": "class"})
    assert belle.height == 1000 and q.height == 0


def test_lone_surrogate_is_one_quarantine_row_and_the_rest_kept(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"instruction": "Bad \\ud800 escape", "output": "x"}\n{"instruction": "Fine", "output": "Good"}\n'
                    '{"instruction": "Hi", "output": "Ho", "meta": "ignored \\udfff"}\n{"inst\\ud800": 1}\n')
    dolly = tmp_path / "d.jsonl"
    dolly.write_text('{"instruction": "Hi", "response": "Ho", "category": "c\\udfff"}\n')
    ledger, q = run(path, dolly)
    assert ledger["instruction"].to_list() == ["Fine", "Hi"], "a surrogate in an ignored field costs nothing"
    assert q["source_index"].to_list() == [0, 3, 0] and "lone surrogate ('\\ud800')" in q["error"][0]
    assert "\\ud800" in q["raw"][0] and "lone surrogate ('\\udfff')" in q["error"][2]
    q.write_parquet(tmp_path / "q.parquet")  # storable: the crash was here


def _cut_in_half(data: bytes, comp: str) -> bytes:
    if comp == "gz":
        packed = gzip.compress(data)
    else:
        zstandard = pytest.importorskip("zstandard")
        packed = zstandard.ZstdCompressor().compress(data)
    return packed[: len(packed) // 2]


@pytest.mark.parametrize("comp", ["gz", "zst"])
@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_truncated_compressed_file_keeps_records_before_the_cut(tmp_path, comp, fmt, shared_data):
    records = json.loads((shared_data / "alpaca" / "alpaca_5000.json").read_text())[:2000]
    text = "\n".join(json.dumps(r) for r in records) if fmt == "jsonl" else json.dumps(records, indent=1)
    path = tmp_path / f"cut.{fmt}.{comp}"
    path.write_bytes(_cut_in_half(text.encode(), comp))
    ledger, q, read = ingest_counted([path], IngestConfig())
    assert 600 < ledger.height < 1400, "about half the records, not none"
    assert ledger["source_index"].to_list() == list(range(ledger.height)), "every record before the cut"
    assert ledger["response"].to_list() == [normalize_text(r["output"]) for r in records[:ledger.height]]
    notes = q.filter(pl.col("stage") == "read")
    assert notes.height == 1 and "cut short" in notes["error"][0] and "kept" in notes["error"][0]
    assert q.filter(pl.col("stage") == "parse").height == 1, "the one record the cut went through"
    assert read["records"][0] == ledger["source_index"].n_unique() + q["source_index"].drop_nulls().n_unique()


def test_multi_member_gzip_and_corrupt_gzip(tmp_path):
    rows = [json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(4)]
    (tmp_path / "m.jsonl.gz").write_bytes(gzip.compress("".join(rows[:2]).encode()) + gzip.compress("".join(rows[2:]).encode()))
    ledger, q = run(tmp_path / "m.jsonl.gz")
    assert q.height == 0 and ledger.height == 4
    varied = [json.dumps({"instruction": f"q{i}", "output": hashlib.sha256(str(i).encode()).hexdigest()}) + "\n" for i in range(20_000)]
    packed = bytearray(gzip.compress("".join(varied).encode()))
    packed[len(packed) // 2:len(packed) // 2 + 64] = b"\xff" * 64
    (tmp_path / "c.jsonl.gz").write_bytes(bytes(packed))
    ledger, q = run(tmp_path / "c.jsonl.gz")
    assert 5_000 < ledger.height < 10_000 and "corrupt gz data" in q.filter(pl.col("stage") == "read")["error"][0]


def test_json_past_pythons_limits_is_a_parse_row(tmp_path):
    good = json.dumps({"instruction": "a", "output": "b"})
    (tmp_path / "deep.jsonl").write_text("\n".join([good, "[" * 100_000 + "]" * 100_000, '{"n": ' + "9" * 5000 + "}", good]))
    (tmp_path / "deep.json").write_text(f"[{good}, " + "[" * 100_000 + "]" * 100_000 + "]")
    ledger, q = run(tmp_path / "deep.jsonl", tmp_path / "deep.json")
    assert ledger.height == 3
    assert sorted(q["error"].to_list())[0].startswith("line 2: bad JSON: nested too deeply")
    assert q.filter(pl.col("source").str.ends_with(".json"))["error"].str.contains("nested too deeply").all()


def test_read_counts_per_file(tmp_path, shared_data):
    seed = shared_data / "self_instruct" / "seed_tasks.jsonl"
    bad = write(tmp_path / "bad.jsonl", [{"instruction": "a", "output": "b"}, 5, {"x": 1}], jsonl=True)
    ledger, q, read = ingest_counted([seed, bad], IngestConfig())
    rows = {r["source"]: r for r in read.to_dicts()}
    assert rows[str(seed)]["records"] == rows[str(seed)]["lines"] == 175
    assert rows[str(seed)]["ledger_rows"] == ledger.filter(pl.col("source") == str(seed)).height >= 175
    assert (rows[str(bad)]["records"], rows[str(bad)]["ledger_rows"], rows[str(bad)]["quarantine_rows"]) == (3, 1, 2)


def test_counts_check_fails_when_a_row_goes_missing(tmp_path, shared_data):
    two = write(tmp_path / "two.jsonl", [{"instruction": "Antonym?", "instances": [{"input": "hot", "output": "cold"},
                                                                                   {"input": "up", "output": "down"}]}], jsonl=True)
    paths = [shared_data / "malformed" / "sharegpt_truncated.json", shared_data / "self_instruct" / "seed_tasks.jsonl", two]
    ledger, q, read = ingest_counted(paths, IngestConfig())
    ledger = finalize(ledger)
    c = counts(ledger, q, read)
    assert c["input"] == c["curated"] + c["rejected"] + c["quarantined"] == ledger.height + q.height
    assert c["read"]["records"] == read["records"].sum() == c["input"] - 1, "one self-instruct record holds two instances"
    lost = ledger.filter(pl.col("source_index") != ledger["source_index"][7])
    with pytest.raises(RuntimeError, match="ledger rows"):
        counts(lost, q, read)
    with pytest.raises(RuntimeError, match="quarantine holds"):
        counts(ledger, q.slice(1), read)
    with pytest.raises(RuntimeError, match="account for"):
        counts(ledger.with_columns(pl.col("source_index") + 1), q, read)
    short = read.with_columns(pl.col("lines") + (pl.col("source").str.ends_with(".jsonl")))
    with pytest.raises(RuntimeError, match="non-blank lines"):
        counts(ledger, q, short)
