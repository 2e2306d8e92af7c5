"""Streaming ingest: a file read in many small chunks gives what reading it as one chunk gives, byte streams split
anywhere give what the whole gives, and reading holds a chunk, not the file."""

import base64
import codecs
import gzip
import json
import logging
import random
import tracemalloc
from pathlib import Path

import polars as pl
import pytest

from pipeline import runner, streams
from pipeline.io import expand_inputs, file_sha256
from pipeline.read import read_chunks
from pipeline.stages.ingest import ingest_counted, ingest_file, ingest_part
from schemas.config import CurationConfig, IngestConfig

ROOT = Path(__file__).resolve().parents[1]
WHOLE = 10**9  # records per chunk: the file as one chunk


def records(n: int, seed: int = 0) -> list[dict]:
    """Alpaca-like records that do not compress away (each output holds a hash), some of them broken."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        rec = {"instruction": f"Question {i} é日?", "input": "" if i % 4 else "some context",
               "output": base64.b64encode(rng.randbytes(150)).decode()}
        if i % 97 == 5:
            rec = {"instruction": f"q{i}", "output": rng.randrange(9)}  # invalid: output is a number
        out.append(rec)
    return out


def jsonl_bytes(rows: list[dict]) -> bytes:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines[10] = '{"instruction": "cut'  # a line that does not parse
    return "\n".join(lines).encode("utf-8")


def assert_same_as_one_chunk(path: Path, rows: int = 7, cfg: IngestConfig = IngestConfig()) -> tuple[pl.DataFrame, ...]:
    chunks = [len(items) for items, _ in read_chunks(path, rows)]
    assert len(chunks) > 5 and max(chunks) <= rows, "the file is read in several small chunks"
    small, whole = ingest_part(path, cfg, rows), ingest_part(path, cfg, WHOLE)
    for a, b in zip(small, whole):
        assert a.schema == b.schema and a.equals(b)
    return whole


def test_json_lines_plain_and_gzip_in_chunks(tmp_path):
    data = jsonl_bytes(records(400))
    (tmp_path / "a.jsonl").write_bytes(data.replace(b"\n", b"\r\n", 50))
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(data))
    for name in ("a.jsonl", "a.jsonl.gz"):
        ledger, quarantine, read = assert_same_as_one_chunk(tmp_path / name)
        assert ledger.height == 400 - 5 - 1 and quarantine["stage"].value_counts().height == 2
        assert read.select("lines", "records", "ledger_rows", "quarantine_rows").row(0) == (400, 400, 394, 6)


def test_csv_and_parquet_with_several_row_groups_in_chunks(tmp_path):
    rows = [r for r in records(300) if isinstance(r["output"], str)]
    pl.DataFrame(rows).write_csv(tmp_path / "a.csv")
    text = (tmp_path / "a.csv").read_text()
    (tmp_path / "b.csv").write_text(text.replace("\n", "\r\n") + "q,,a\n\n\"x\",y\n", newline="")
    pl.DataFrame(rows).write_parquet(tmp_path / "c.parquet", row_group_size=16)
    for name in ("a.csv", "b.csv", "c.parquet"):
        ledger, quarantine, read = assert_same_as_one_chunk(tmp_path / name)
        assert ledger["source_index"].to_list()[:len(rows)] == list(range(len(rows)))
    assert read["lines"][0] == len(rows), "Parquet counts rows as lines"


def test_json_array_in_chunks(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(records(200), indent=1)[:-1] + ",\n]")
    ledger, quarantine, _ = assert_same_as_one_chunk(tmp_path / "a.json")
    assert "trailing comma" in quarantine["error"][0]


def test_truncated_gzip_across_chunks_keeps_records_before_the_cut(tmp_path):
    data = jsonl_bytes(records(8000))
    packed = gzip.compress(data)
    assert len(packed) > 3 * streams.CHUNK, "the cut falls after several decompression steps"
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    ledger, quarantine, read = assert_same_as_one_chunk(path, rows=500)
    notes = quarantine.filter(pl.col("stage") == "read")
    assert notes.height == 1 and "cut short" in notes["error"][0] and quarantine["stage"].to_list()[:3] == ["parse", "parse", "read"]
    assert 4000 < read["records"][0] < 6500 and read["notes"][0] == 1


def test_format_is_sniffed_past_a_first_chunk_smaller_than_the_sniff(tmp_path):
    rows = [{"x": 1}] * 30 + [{"instruction": "a", "output": "b"}] * 300  # 30 unrecognised, then 300 Alpaca
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    ledger, quarantine, read = assert_same_as_one_chunk(path, rows=3)
    assert read["format"][0] == "alpaca" and ledger.height == 300 and quarantine.height == 30


@pytest.mark.parametrize("seed", range(5))
def test_byte_streams_split_anywhere_read_as_the_whole(seed):
    rng = random.Random(seed)
    alphabet = [b"a", b" ", b"\t", b"\r", b"\n", b"\r\n", "é".encode(), "日".encode(), b"\xff", b"\xe6\x97"]
    data = codecs.BOM_UTF8 * (seed % 2) + b"".join(rng.choice(alphabet[:8 if seed < 3 else 10]) for _ in range(2000))
    cuts = sorted(rng.sample(range(1, len(data)), 60))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    assert list(streams.lines(pieces)) == data.splitlines()
    counted = streams.NonBlank(pieces)
    assert b"".join(counted) == data and counted.lines == sum(map(bool, map(bytes.strip, data.splitlines())))
    for partial in (False, True):
        try:
            streams.decode(data, partial)
            expected = None
        except UnicodeDecodeError as err:
            expected = (err.start, err.reason)
        got = streams.utf8_error(pieces, lambda: partial)
        assert ((got.start, got.reason) if got else None) == expected


def test_multi_member_gzip_with_padding_and_a_member_after_garbage(tmp_path):
    data = jsonl_bytes(records(4000))
    for name, packed, broken in (("pad", gzip.compress(data[:90_000]) + gzip.compress(data[90_000:]) + b"\0" * 70_000, None),
                                 ("junk", gzip.compress(data[:90_000]) + b"\0" * 9 + gzip.compress(data[90_000:]), "corrupt")):
        (tmp_path / name).write_bytes(packed)
        source = streams.Pieces(tmp_path / name, ".gz")
        got = b"".join(source)
        assert got == (data if broken is None else data[:90_000])
        assert source.broken is None if broken is None else source.broken.startswith("corrupt gz data near byte")


def peak_bytes(run) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", ["big.jsonl", "big.jsonl.gz", "big.csv"])
def test_reading_holds_a_chunk_not_the_file(tmp_path, name, monkeypatch):
    """Python-side memory (tracemalloc) of reading a ~4 MB file in 64 KB pieces: in chunks of 200 records it stays a
    small part of the file (about 0.5-1 MB); as one chunk (what reading whole did) it is more than the file."""
    monkeypatch.setattr(streams, "BLOCK", 1 << 16)
    rows = [r for r in records(16_000) if isinstance(r["output"], str)]
    path = tmp_path / name
    if name.endswith(".csv"):
        pl.DataFrame(rows).write_csv(path)
    else:
        data = jsonl_bytes(rows)
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    size = len(gzip.decompress(path.read_bytes())) if name.endswith(".gz") else path.stat().st_size

    def read(rows: int):
        return lambda: sum(len(items) for items, _ in read_chunks(path, rows))

    streamed, whole = peak_bytes(read(200)), peak_bytes(read(WHOLE))
    assert whole > size and streamed < size / 3, (streamed, whole, size)


def test_ingesting_a_file_holds_a_chunk_of_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(streams, "BLOCK", 1 << 16)
    path = tmp_path / "big.jsonl"
    path.write_bytes(jsonl_bytes(records(16_000)))

    def ingest(rows: int):
        def run():
            frames, tally = ingest_file(path, IngestConfig(), rows)
            assert sum(f.height for f in frames) == tally.counts["ledger_rows"] > 15_000
        return run

    ingest(200)()  # once untraced: first-use allocations (validators, regexes) are not the chunk's
    assert peak_bytes(ingest(200)) * 3 < path.stat().st_size < peak_bytes(ingest(WHOLE))


def test_streamed_parts_combine_into_the_ledger_ingest_makes_in_memory(tmp_path):
    """The runner writes each file chunk by chunk and streams the parts into one ledger (ids numbered over files
    from the content hashes alone): the same frames as ingesting in memory."""
    copy = tmp_path / "copy.jsonl"
    copy.write_text((ROOT / "data" / "sample" / "dolly.jsonl").read_text())  # every record an exact copy of another file's
    files = [*expand_inputs([str(ROOT / "data" / "sample")]), copy]
    cfg, log = CurationConfig(execution={"ingest_chunk": 4}), logging.getLogger("test")
    parts = [runner.ingest_part(str(f), file_sha256(f), cfg, tmp_path, log) for f in files]
    result = runner.combine_parts(parts, tmp_path, log)
    assert pl.scan_parquet(result.stage.path).select(pl.len()).collect().item() > 300
    ledger, quarantine, read = ingest_counted(files, IngestConfig())
    assert pl.read_parquet(result.stage.path).equals(ledger) and ledger["id"].str.ends_with("-1").sum() > 10
    assert pl.read_parquet(result.quarantine).equals(quarantine) and pl.read_parquet(result.read).equals(read)
