"""Read raw records tolerantly, a bounded chunk at a time.

Readers yield `RawItem`s: either a parsed object or the raw text of a spot that did not parse,
so a broken file costs its broken spots and never the run. JSON Lines and CSV stream, Parquet
and Arrow go by row groups and record batches; a JSON file (an array, one object) and a UTF-16/32
file are decoded whole, once.
"""

import contextlib
import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import polars as pl

from pipeline.io import suffixes
from pipeline.streams import BLOCK, WIDE_BOMS, NonBlank, Pieces, blocks, decode, head, lines, text_stream, utf8_error
from schemas.config.execution import INGEST_CHUNK

csv.field_size_limit(1 << 30)  # long responses are records, not CSV errors
JSON_ERRORS = (ValueError, RecursionError)  # JSONDecodeError, and what json raises past its limits


@dataclass(frozen=True)
class RawItem:
    """One record as read: `obj` when it parsed, else `raw` and `error` (stage 'parse' or 'read')."""

    index: int | None
    obj: object = None
    raw: str = ""
    error: str | None = None
    stage: str = "parse"
    offset: int | None = None


def _cut(text: str, limit: int, start: int = 0) -> str:
    """text[start:], shortened to `limit` chars and a count of the rest (without copying a long rest)."""
    rest = len(text) - start
    return text[start:] if rest <= limit else text[start:start + limit] + f"… [{rest - limit} more chars]"


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _why(err: Exception) -> str:
    """One line for a JSON failure: the decoder's message, or why Python refused (nesting, huge numbers)."""
    if isinstance(err, json.JSONDecodeError):
        return err.msg
    if isinstance(err, RecursionError):
        return "nested too deeply"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def iter_json_array(text: str, limit: int) -> Iterator[RawItem]:
    """Parse a JSON array element by element (never the whole list at once), keeping every record before a broken spot.

    A trailing comma is reported and skipped; anything else unparseable ends the array, and its
    tail becomes one quarantine item with the offset where reading stopped.
    """
    decoder = json.JSONDecoder()
    pos, index = _skip_ws(text, 0) + 1, 0
    while True:
        pos = _skip_ws(text, pos)
        if pos >= len(text):
            yield RawItem(None, raw="", offset=pos, error=f"JSON array not closed: file ends at char {pos}")
            return
        if text[pos] == "]":
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except JSON_ERRORS as err:
            yield RawItem(index, raw=_cut(text, limit, pos), offset=pos,
                          error=f"unreadable JSON from char {pos} to end of file ({len(text) - pos} chars): {_why(err)}")
            return
        yield RawItem(index, obj)
        index += 1
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            nxt = _skip_ws(text, pos + 1)
            if nxt < len(text) and text[nxt] == "]":
                yield RawItem(None, raw=text[max(0, pos - 40):nxt + 1], offset=pos,
                              error=f"trailing comma before ']' at char {pos}; records before it kept")
            pos += 1
        elif pos < len(text) and text[pos] != "]":
            yield RawItem(None, raw=_cut(text, limit, pos), offset=pos,
                          error=f"expected ',' or ']' at char {pos}; rest of file unreadable")
            return


def iter_json_lines(lines: Iterable[bytes], limit: int) -> Iterator[RawItem]:
    """One record per non-blank line; each bad line (bad JSON, bad UTF-8) is its own item."""
    index = 0
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as err:
            yield RawItem(index, raw=_cut(line.decode("utf-8", "replace"), limit), offset=lineno,
                          error=f"line {lineno} is not UTF-8: {err.reason} at byte {err.start}")
        else:
            try:
                yield RawItem(index, json.loads(text))
            except json.JSONDecodeError as err:
                yield RawItem(index, raw=_cut(text, limit), offset=lineno, error=f"line {lineno}: bad JSON: {err.msg} at column {err.colno}")
            except JSON_ERRORS as err:
                yield RawItem(index, raw=_cut(text, limit), offset=lineno, error=f"line {lineno}: bad JSON: {_why(err)}")
        index += 1


def iter_csv(text: Iterable[str], sep: str, limit: int) -> Iterator[RawItem]:
    """Rows as dicts of strings, from text lines with their newlines; a row with the wrong number of fields is a
    parse error. Blank rows are skipped and not counted, as blank JSON Lines are.
    """
    reader = csv.reader(text, delimiter=sep)
    try:
        header = next(reader, None)
        if header is None:
            return
        rows = (row for row in reader if any(cell.strip() for cell in row))
        for index, row in enumerate(rows):
            if len(row) != len(header):
                yield RawItem(index, raw=_cut(sep.join(row), limit), offset=reader.line_num,
                              error=f"line {reader.line_num}: {len(row)} fields, header has {len(header)}")
            else:
                yield RawItem(index, dict(zip(header, row)))
    except csv.Error as err:
        yield RawItem(None, offset=reader.line_num, error=f"line {reader.line_num}: {err}; rest of file unreadable")


def _table_frames(path: Path, fmt: str, rows: int) -> Iterator[pl.DataFrame]:
    """A Parquet file `rows` rows at a time (polars reads only the row groups a slice spans); an Arrow file by its
    record batches when it is an IPC stream (as datasets writes it), else (an IPC file) `rows` at a time."""
    import pyarrow as pa

    if fmt == ".arrow":
        with pa.OSFile(str(path)) as f:
            try:
                stream = iter(pa.ipc.open_stream(f))
                first = list(islice(stream, 1))
            except (pa.ArrowException, OSError):  # not a stream: polars reads it as an IPC file, or says why not
                stream = None
            if stream is not None:
                yield from (pl.from_arrow(batch) for batch in chain(first, stream))
                return
    scan = pl.scan_parquet(path) if fmt == ".parquet" else pl.scan_ipc(path)
    total = scan.select(pl.len()).collect().item()
    yield from (scan.slice(start, rows).collect() for start in range(0, total, rows))


def _table_items(path: Path, fmt: str, rows: int) -> Iterator[RawItem]:
    index = 0
    for frame in _table_frames(path, fmt, rows):
        for obj in frame.to_dicts():
            yield RawItem(index, obj)
            index += 1


def _json_items(text: str, limit: int) -> Iterator[RawItem]:
    """Records of a decoded JSON file: an array, one object, or JSON Lines saved as .json."""
    start = _skip_ws(text, 0)
    if start >= len(text):
        return
    if text[start] == "[":
        yield from iter_json_array(text, limit)
        return
    try:
        yield RawItem(0, json.loads(text))
    except JSON_ERRORS:
        yield from iter_json_lines(lines(text[i:i + BLOCK].encode("utf-8") for i in range(0, len(text), BLOCK)), limit)


def _starts_wide(source: Pieces) -> bool:
    """Whether the file's text opens with a UTF-16/32 byte order mark."""
    with contextlib.closing(iter(source)) as pieces:
        return head(pieces, 4)[0].startswith(WIDE_BOMS)


def _whole(source: Pieces) -> tuple[bytes, int]:
    """The decompressed bytes held whole, as UTF-8 (a UTF-16/32 file re-encoded), and their non-blank lines."""
    counted = NonBlank(source)
    data = bytearray()
    for piece in counted:
        data += piece
    if not data.startswith(WIDE_BOMS):
        return data, counted.lines
    data = decode(data, partial=bool(source.broken)).encode("utf-8")
    counted = NonBlank(blocks(data))
    for _ in counted:
        pass
    return data, counted.lines


def _items(path: Path, source: Pieces, limit: int, csv_sep: str, rows: int) -> tuple[Iterator[RawItem], int | None]:
    """The records of one file and its non-blank lines, or None where that is its records (JSON Lines, tables).

    What cannot be read at all raises here, before any record: JSON Lines stream with nothing to check;
    a CSV file is checked as UTF-8 in a first pass, then read; a JSON or UTF-16/32 file is read whole.
    """
    fmt = suffixes(path)[0]
    if fmt in (".parquet", ".arrow"):
        return _table_items(path, fmt, rows), None
    partial = lambda: bool(source.broken)  # noqa: E731 - known once a pass has ended
    wide = _starts_wide(source)
    if fmt in (".jsonl", ".ndjson"):
        if not wide:
            return iter_json_lines(lines(source), limit), None
        data, _ = _whole(source)
        return iter_json_lines(lines(blocks(data)), limit), None
    sep = "\t" if fmt == ".tsv" else csv_sep
    if fmt in (".csv", ".tsv") and not wide:
        counted = NonBlank(source)
        if (err := utf8_error(counted, partial)) is not None:
            raise err
        return iter_csv(text_stream(source), sep, limit), counted.lines
    data, count = _whole(source)
    if fmt in (".csv", ".tsv"):  # UTF-16/32, re-encoded as UTF-8: read as text a block at a time
        return iter_csv(text_stream(blocks(data)), sep, limit), count
    text = decode(data, partial=partial())
    del data  # the text alone is held from here
    return _json_items(text, limit), count


def _unreadable(path: Path, err: Exception) -> RawItem:
    reason = f"not UTF-8 ({err.reason} at byte {err.start})" if isinstance(err, UnicodeDecodeError) else f"{type(err).__name__}: {err}"
    return RawItem(None, stage="read", error=f"cannot read {path.name}: {str(reason).splitlines()[0]}")


def read_chunks(path: Path, rows: int, limit: int = 2000, csv_sep: str = ",") -> Iterator[tuple[list[RawItem], int]]:
    """One file's records, `rows` at a time, each chunk with the non-blank lines (rows for Parquet/Arrow) it read.

    A file that cannot be read at all, or holds nothing, is one 'read' item; a compressed stream
    that breaks keeps the records before the break and adds one 'read' item saying where, as does a
    file that fails part way (a corrupt row group).
    """
    source = Pieces(path, suffixes(path)[1])
    try:
        items, count = _items(path, source, limit, csv_sep, rows)
        chunk = list(islice(items, rows))
    except Exception as err:  # noqa: BLE001 - a file we cannot open or decode is data, not a crash
        yield [_unreadable(path, err)], 0
        return
    read = 0
    while chunk:
        read += len(chunk)
        yield chunk, count if count is not None else sum(i.index is not None for i in chunk)
        count = 0 if count is not None else None
        try:
            chunk = list(islice(items, rows))
        except Exception as err:  # noqa: BLE001
            yield [RawItem(None, stage="read", error=f"{_unreadable(path, err).error}; the records before it are kept")], 0
            return
    if source.broken:
        yield [RawItem(None, stage="read", error=f"{path.name}: {source.broken}; the records before it are kept")], 0
    elif not read:
        yield [RawItem(None, stage="read", error=f"{path.name} is empty: it holds no records")], count or 0


def read_items(path: Path, limit: int = 2000, csv_sep: str = ",") -> Iterator[RawItem]:
    """Every record of one file, as `read_chunks` reads them."""
    for chunk, _ in read_chunks(path, INGEST_CHUNK, limit, csv_sep):
        yield from chunk
