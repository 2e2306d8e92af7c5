"""Fuzz ingest: random bytes, random JSON values and mutated real records, seeded and fast.

Whatever the files hold, ingest finishes, every record read is in the ledger or the quarantine,
the counts match what was read, and both tables can be stored as Parquet.
"""

import gzip
import io
import json
import random
from pathlib import Path

import pytest

from pipeline.export import counts, finalize
from pipeline.stages.ingest import ingest_counted
from schemas.config import IngestConfig

SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".arrow", ".jsonl.gz", ".json.zst")
KEYS = ("instruction", "input", "output", "response", "context", "category", "messages", "role", "content", "conversations",
        "from", "value", "prompt", "completion", "chosen", "rejected", "instances", "name", "keys", "tool_calls", "type", "text")
ODD_TEXT = ("\ud800", "\udfff", "\x00", "\u2028", "\r\n", "\ufeff", "日本語", "\U0001f600", "", " ", "\n\nHuman: ", "\n\nAssistant: ")


def random_value(rng: random.Random, depth: int = 0) -> object:
    """Any JSON value, biased towards the keys and shapes the format detectors look for."""
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**70, 1.5, float("nan")])
    if kind in (2, 3, 4):
        return "".join(rng.choice(ODD_TEXT + ("word", "Human:", "Assistant:", "gpt", "user", "assistant", "text"))
                       for _ in range(rng.randrange(4)))
    if kind == 5:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def mutate_record(rng: random.Random, record: dict) -> object:
    """A real record with a key dropped, renamed or given a random value, or a string spoiled."""
    rec = dict(record)
    op = rng.randrange(5)
    key = rng.choice(sorted(rec)) if rec else "instruction"
    if op == 0:
        rec.pop(key, None)
    elif op == 1:
        rec[rng.choice(KEYS)] = rec.pop(key, None)
    elif op == 2:
        rec[key] = random_value(rng)
    elif op == 3 and isinstance(rec.get(key), str):
        text = rec[key]
        cut = rng.randrange(len(text) + 1)
        rec[key] = text[:cut] + rng.choice(ODD_TEXT) + text[cut:]
    return rec


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Flip, drop, insert or cut bytes of a serialised file."""
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op, at = rng.randrange(4), rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(at, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            del buf[at:at + rng.randrange(1, 40)]
        elif op == 2:
            buf[at:at] = rng.choice([b"\\ud800", b'"', b",", b"]", b"\n", b"\xff\xfe", b"{", b"[" * 3000])
        else:
            del buf[at:]
    return bytes(buf)


def serialise(rng: random.Random, records: list, suffix: str) -> bytes:
    """Records in the file format the suffix names (tables only when the records fit one)."""
    if suffix in (".parquet", ".arrow"):
        import polars as pl

        out = io.BytesIO()
        try:
            frame = pl.DataFrame([r for r in records if isinstance(r, dict)], infer_schema_length=None)
            frame.write_parquet(out) if suffix == ".parquet" else frame.write_ipc_stream(out)
        except Exception:  # noqa: BLE001 - records polars cannot type or store: random bytes instead
            return rng.randbytes(rng.randrange(200))
        return out.getvalue()
    if suffix in (".csv", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        keys = sorted({k for r in records if isinstance(r, dict) for k in r}) or ["x"]
        lines = [sep.join(keys)] + [sep.join(json.dumps(r.get(k)) if isinstance(r, dict) else "" for k in keys) for r in records]
        return "\n".join(lines).encode("utf-8", "surrogatepass")
    if ".jsonl" in suffix or suffix == ".ndjson":
        text = "\n".join(json.dumps(r) for r in records)
    else:
        text = json.dumps(records, indent=rng.choice([None, 1]))
    data = text.encode("utf-8", "surrogatepass")
    if suffix.endswith(".gz"):
        return gzip.compress(data)
    if suffix.endswith(".zst"):
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


def real_records(shared: Path | None) -> list[dict]:
    """Alpaca and truncated-ShareGPT records from ../shared/data, or a few made here where it is absent."""
    if shared is None:
        return [{"instruction": "Add 2 and 3.", "input": "", "output": "5"},
                {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}]
    alpaca = json.loads((shared / "alpaca" / "alpaca_5000.json").read_text())[:300]
    text = (shared / "malformed" / "sharegpt_truncated.json").read_text()
    sharegpt = json.JSONDecoder().raw_decode(text[text.index("{"):])[0]
    return alpaca + [sharegpt]


def fuzz_files(rng: random.Random, folder: Path, records: list[dict], n: int) -> list[Path]:
    paths = []
    for i in range(n):
        suffix = rng.choice(SUFFIXES)
        kind = rng.randrange(3)
        if kind == 0:
            data = rng.randbytes(rng.randrange(400))
        elif kind == 1:
            data = serialise(rng, [random_value(rng) for _ in range(rng.randrange(6))], suffix)
        else:
            picked = [mutate_record(rng, rng.choice(records)) for _ in range(rng.randrange(1, 12))]
            data = serialise(rng, picked, suffix)
            if rng.random() < 0.5:
                data = mutate_bytes(rng, data)
        path = folder / f"f{i:03d}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ingest_survives_anything_and_accounts_for_every_record(tmp_path, seed, request):
    shared = request.getfixturevalue("shared_data") if (Path(__file__).resolve().parents[2] / "shared" / "data").is_dir() else None
    rng = random.Random(seed)
    paths = fuzz_files(rng, tmp_path, real_records(shared), 60)
    ledger, quarantine, read = ingest_counted(paths, IngestConfig())
    c = counts(finalize(ledger), quarantine, read)  # raises when any file's records or rows are unaccounted for
    assert read["source"].to_list() == [str(p) for p in paths]
    assert c["input"] == ledger.height + quarantine.height == c["curated"] + c["quarantined"]
    assert quarantine["error"].null_count() == 0 and quarantine["stage"].is_in(["read", "parse", "validate"]).all()
    assert ledger["id"].is_unique().all()
    ledger.write_parquet(io.BytesIO())
    quarantine.write_parquet(io.BytesIO())
    assert ledger.height > 0 and quarantine.height > 0, "the fuzz reaches both fates"
