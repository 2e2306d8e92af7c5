"""File I/O: expand inputs, read raw records tolerantly, write Parquet and JSON atomically.

Readers yield `RawItem`s: either a parsed object or the raw text of a spot that did not parse,
so a broken file costs its broken spots and never the run.
"""

import csv
import glob
import gzip
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

READABLE = (".json", ".jsonl", ".ndjson", ".parquet", ".csv", ".tsv")
COMPRESSED = (".gz", ".zst")
_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass(frozen=True)
class RawItem:
    """One record as read: `obj` when it parsed, else `raw` and `error` (stage 'parse' or 'read')."""

    index: int | None
    obj: object = None
    raw: str = ""
    error: str | None = None
    stage: str = "parse"
    offset: int | None = None


class InputError(ValueError):
    """An input argument that names nothing readable."""


def _suffixes(path: Path) -> tuple[str, str]:
    """(format suffix, compression suffix) of a path like data.jsonl.gz."""
    sfx = [s.lower() for s in path.suffixes]
    comp = sfx.pop() if sfx and sfx[-1] in COMPRESSED else ""
    return (sfx[-1] if sfx else ""), comp


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (searched recursively for readable files) and globs, sorted and unique."""
    found: list[Path] = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            matches = [p for p in path.rglob("*") if p.is_file() and _suffixes(p)[0] in READABLE]
        elif path.is_file():
            matches = [path]
        else:
            matches = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
        if not matches:
            raise InputError(f"input not found or holds no readable file: {spec}")
        found.extend(sorted(matches))
    seen: set[Path] = set()
    unique = []
    for p in found:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(Path(os.path.normpath(p)))
    return unique


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_bytes(path: Path, comp: str) -> bytes:
    data = path.read_bytes()
    if comp == ".gz":
        return gzip.decompress(data)
    if comp == ".zst":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return data


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM) or BOM-marked UTF-16; anything else raises UnicodeDecodeError."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more chars]"


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def iter_json_array(text: str, limit: int) -> Iterator[RawItem]:
    """Parse a JSON array element by element, keeping every record before a broken spot.

    A trailing comma is reported and skipped; anything else unparseable ends the array, and its
    tail becomes one quarantine item with the offset where reading stopped.
    """
    try:
        data = json.loads(text)
        yield from (RawItem(i, obj) for i, obj in enumerate(data))
        return
    except json.JSONDecodeError:
        pass
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
        except json.JSONDecodeError as err:
            tail = text[pos:]
            yield RawItem(index, raw=_cut(tail, limit), offset=pos,
                          error=f"unreadable JSON from char {pos} to end of file ({len(tail)} chars): {err.msg}")
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
            yield RawItem(None, raw=_cut(text[pos:], limit), offset=pos,
                          error=f"expected ',' or ']' at char {pos}; rest of file unreadable")
            return


def iter_json_lines(data: bytes, limit: int) -> Iterator[RawItem]:
    """One record per non-blank line; each bad line (bad JSON, bad UTF-8) is its own item."""
    index = 0
    for lineno, line in enumerate(data.splitlines(), start=1):
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
        index += 1


def iter_csv(text: str, sep: str, limit: int) -> Iterator[RawItem]:
    """Rows as dicts of strings; a row with the wrong number of fields is a parse error."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    header = next(reader, None)
    if header is None:
        return
    for index, row in enumerate(reader):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield RawItem(index, raw=_cut(sep.join(row), limit), offset=reader.line_num,
                          error=f"line {reader.line_num}: {len(row)} fields, header has {len(header)}")
        else:
            yield RawItem(index, dict(zip(header, row)))


def read_items(path: Path, limit: int = 2000, csv_sep: str = ",") -> Iterator[RawItem]:
    """Every record of one file; a file that cannot be read at all is one 'read' item."""
    fmt, comp = _suffixes(path)
    try:
        if fmt == ".parquet":
            for i, obj in enumerate(pl.read_parquet(path).to_dicts()):
                yield RawItem(i, obj)
            return
        data = _read_bytes(path, comp)
        if fmt in (".jsonl", ".ndjson"):
            yield from iter_json_lines(data, limit)
            return
        text = decode(data)
    except (OSError, EOFError, UnicodeDecodeError, pl.exceptions.PolarsError, Exception) as err:  # noqa: BLE001
        reason = f"not UTF-8 ({err.reason} at byte {err.start})" if isinstance(err, UnicodeDecodeError) else f"{type(err).__name__}: {err}"
        yield RawItem(None, stage="read", error=f"cannot read {path.name}: {str(reason).splitlines()[0]}")
        return
    if fmt in (".csv", ".tsv"):
        yield from iter_csv(text, "\t" if fmt == ".tsv" else csv_sep, limit)
        return
    start = _skip_ws(text, 0)
    if start >= len(text):
        yield RawItem(None, stage="read", error=f"{path.name} is empty")
    elif text[start] == "[":
        yield from iter_json_array(text, limit)
    else:  # a single object, or JSON Lines saved as .json
        try:
            obj = json.loads(text)
            yield RawItem(0, obj)
        except json.JSONDecodeError:
            yield from iter_json_lines(text.encode("utf-8"), limit)


def write_atomic(path: str | Path, write) -> Path:
    """Call write(tmp_path) then rename onto `path`, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_parquet(frame: pl.DataFrame, path: str | Path) -> Path:
    """Deterministic Parquet (no statistics timestamps, fixed compression), written atomically."""
    return write_atomic(path, lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True))


def write_json(data: dict, path: str | Path) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"))


def write_text(text: str, path: str | Path) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
