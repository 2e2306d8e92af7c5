"""The formats users bring: OpenAI content parts and tool use, preference pairs (HH-RLHF), UTF-16 JSON Lines,
Hugging Face `datasets` folders and Arrow files, hub names."""

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.io import InputError, expand_inputs
from pipeline.stages.ingest import ingest, ingest_counted
from schemas.config import IngestConfig


def run(*paths, **cfg):
    return ingest([Path(p) for p in paths], IngestConfig(**cfg))


def jsonl(path: Path, rows: list, encoding: str = "utf-8") -> Path:
    path.write_bytes("\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode(encoding))
    return path


def test_metadata_named_name_or_keys_is_ignored(tmp_path):
    rows = [{"instruction": "Add 2 and 3.", "output": "5", "name": None}, {"instruction": "Hi", "output": "Hello", "keys": "abc"},
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "name": 7, "keys": [1]}]
    ledger, q = run(jsonl(tmp_path / "a.jsonl", rows[:2]), jsonl(tmp_path / "b.jsonl", rows[2:]))
    assert q.height == 0 and ledger.height == 3


def test_openai_content_parts_are_joined_and_other_parts_quarantined(tmp_path):
    parts = [{"type": "text", "text": "Summarise:"}, {"type": "text", "text": "The cat sat."}]
    rows = [{"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": parts},
                          {"role": "assistant", "content": [{"type": "text", "text": "A cat sat."}]}]},
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x.png"}}]},
                          {"role": "assistant", "content": "A dog."}]}]
    ledger, q = run(jsonl(tmp_path / "p.jsonl", rows))
    assert ledger["messages"][0].to_list() == [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "Summarise:\n\nThe cat sat."},
                                               {"role": "assistant", "content": "A cat sat."}]
    assert q["source_index"].to_list() == [1] and q["error"][0].startswith("messages.0.content:") and "image_url" in q["error"][0]


def test_tool_use_conversations_are_quarantined_with_one_reason(tmp_path):
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}
    rows = [{"messages": [{"role": "user", "content": "Weather in Oslo?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
                          {"role": "tool", "tool_call_id": "c1", "content": "3C"}, {"role": "assistant", "content": "3C."}]},
            {"messages": [{"role": "user", "content": "x"}, {"role": "function", "name": "f", "content": "y"},
                          {"role": "assistant", "content": "z"}]},
            {"messages": [{"role": "user", "content": "Plain?"}, {"role": "assistant", "content": "Yes."}]}]
    ledger, q = run(jsonl(tmp_path / "t.jsonl", rows))
    assert ledger["source_index"].to_list() == [2]
    assert q["source_index"].to_list() == [0, 1] and q["error"].str.contains("tool-use conversation").all()
    assert q["error"].n_unique() == 1, "one clear reason, not a field error per record"


HH = [{"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: 6.",
       "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: Ask someone else."},
      {"chosen": "\n\nHuman: Name a colour.\n\nAssistant: Blue.", "rejected": "\n\nHuman: Name a colour.\n\nAssistant:"},
      {"chosen": "\n\nHuman: Hi\n\nHuman: Hello?", "rejected": "\n\nHuman: Hi\n\nAssistant: Hey"},
      {"chosen": "\n\nHuman: Hi\n\nAssistant: Hey", "rejected": "no transcript here"}]


def test_hh_rlhf_chosen_is_curated_and_rejected_kept(tmp_path):
    ledger, q = run(jsonl(tmp_path / "hh.jsonl", HH))
    first = ledger.row(0, named=True)
    assert first["format"] == "preference" and first["n_turns"] == 2
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"] * 2 and first["response"] == "4.\n\n6."
    assert first["rejected_messages"][-1] == {"role": "assistant", "content": "Ask someone else."}
    assert ledger["rejected_messages"][1][-1]["content"] == "", "an empty rejected reply is still a pair"
    assert q["source_index"].to_list() == [2, 3]
    assert "must end with an assistant turn" in q["error"][0] and q["error"][1].startswith("rejected: no 'Human:'")


def test_preference_pairs_as_prompt_strings_or_message_lists(tmp_path):
    msgs = lambda a: [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": a}]  # noqa: E731
    rows = [{"prompt": "Q?", "chosen": "Good.", "rejected": "Bad."}, {"chosen": msgs("Good."), "rejected": msgs("Bad.")}]
    ledger, q = run(jsonl(tmp_path / "pref.jsonl", rows))
    assert q.height == 0 and ledger["messages"][0].to_list() == ledger["messages"][1].to_list() == msgs("Good.")
    assert ledger["rejected_messages"][0].to_list() == msgs("Bad.")
    other, _ = run(jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "a", "output": "b"}]))
    assert other["rejected_messages"].to_list() == [None]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_json_lines_with_bom(tmp_path, encoding):
    rows = [{"instruction": "héllo", "output": "wörld"}, {"instruction": "日本", "output": "語"}]
    path = tmp_path / "u.jsonl"
    bom = {"utf-16": b"", "utf-16-be": b"\xfe\xff", "utf-32": b""}[encoding]
    path.write_bytes(bom + "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode(encoding))
    ledger, q, read = ingest_counted([path], IngestConfig())
    assert q.height == 0 and ledger["instruction"].to_list() == ["héllo", "日本"]
    assert read.select("lines", "records").row(0) == (2, 2)


@pytest.mark.parametrize("name,content", [("e.jsonl", b""), ("w.jsonl", b"\n  \n"), ("e.json", b""), ("w.json", b" \n\t"),
                                          ("e.csv", b""), ("a.json", b"[]"), ("h.csv", b"instruction,output\n")])
def test_empty_files_leave_one_visible_row(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    ledger, q, read = ingest_counted([path], IngestConfig())
    assert ledger.height == 0 and q.height == 1
    assert q.select("stage", "source_index").row(0) == ("read", None) and "is empty" in q["error"][0]
    assert read.select("records", "notes").row(0) == (0, 1)


def _dataset(rows):
    datasets = pytest.importorskip("datasets")
    return datasets.Dataset.from_list(rows)


def test_save_to_disk_folder_and_arrow_file(tmp_path):
    rows = [{"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}.", "name": None} for i in range(5)]
    ds = _dataset(rows)
    ds.save_to_disk(str(tmp_path / "ds"))
    files = expand_inputs([str(tmp_path / "ds")])
    assert [f.suffix for f in files] == [".arrow"], "state.json and dataset_info.json are metadata, not records"
    ledger, q = run(*files)
    assert q.height == 0 and ledger["instruction"].to_list() == [r["instruction"] for r in rows]
    import datasets

    datasets.DatasetDict({"train": ds, "test": _dataset(rows[:2])}).save_to_disk(str(tmp_path / "dd"))
    split_files = expand_inputs([str(tmp_path / "dd")])
    assert sorted(f.parent.name for f in split_files) == ["test", "train"]
    assert run(*split_files)[0].height == 7
    msgs = _dataset([{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}])
    msgs.save_to_disk(str(tmp_path / "chat"))
    chat, q = run(*expand_inputs([str(tmp_path / "chat")]))
    assert q.height == 0 and chat["format"].to_list() == ["openai"]


def test_arrow_ipc_file_and_broken_arrow(tmp_path):
    pl.DataFrame([{"prompt": "Say yes", "completion": "Yes"}]).write_ipc(tmp_path / "a.arrow")
    (tmp_path / "b.arrow").write_bytes(b"ARROW1 not really")
    ledger, q = run(tmp_path / "a.arrow", tmp_path / "b.arrow")
    assert ledger["response"].to_list() == ["Yes"]
    assert q.select("stage", "source").row(0) == ("read", str(tmp_path / "b.arrow"))


def test_hub_dataset_offline_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(InputError, match=r"hub dataset nobody/nothing unavailable.*HF_HUB_OFFLINE=0"):
        expand_inputs(["hf://datasets/nobody/nothing"])


def test_hub_dataset_reads_its_snapshot(monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    snap = tmp_path / "snapshot"
    (snap / "data").mkdir(parents=True)
    pl.DataFrame([{"instruction": "Hi", "output": "Hello"}]).write_parquet(snap / "data" / "train.parquet")
    (snap / "README.md").write_text("# card")
    asked = {}

    def fake(repo_id, repo_type, revision, allow_patterns):
        asked.update(repo=repo_id, type=repo_type, revision=revision)
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    files = expand_inputs(["hf://datasets/org/chat@v1"])
    assert files == [snap / "data" / "train.parquet"] and asked == {"repo": "org/chat", "type": "dataset", "revision": "v1"}
