"""File I/O: expand inputs, read raw records tolerantly, write Parquet and JSON atomically.

Readers yield `RawItem`s: either a parsed object or the raw text of a spot that did not parse,
so a broken file costs its broken spots and never the run.
"""

import codecs
import csv
import glob
import hashlib
import io
import json
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

READABLE = (".json", ".jsonl", ".ndjson", ".parquet", ".arrow", ".csv", ".tsv")
COMPRESSED = (".gz", ".zst")
HUB_PREFIX = "hf://datasets/"
DATASETS_MARKERS = ("state.json", "dataset_dict.json")  # a folder written by datasets' save_to_disk
CHUNK = 1 << 16  # compressed bytes per step: a corrupt step loses at most its own output
WIDE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)  # UTF-32 LE starts like UTF-16 LE
csv.field_size_limit(1 << 30)  # long responses are records, not CSV errors
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


def _datasets_files(folder: Path) -> list[Path] | None:
    """The Arrow files a `save_to_disk` folder names in its state.json, or None for any other folder."""
    if not any((folder / m).is_file() for m in DATASETS_MARKERS):
        return None
    files = []
    for state in sorted(folder.rglob("state.json")):
        try:
            names = [f["filename"] for f in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError):
            names = [p.name for p in state.parent.glob("*.arrow")]
        files += [state.parent / n for n in names if (state.parent / n).is_file()]
    return files


def _folder_files(folder: Path) -> list[Path]:
    """Readable files under a folder; in a `datasets` folder only its data files, not its metadata JSON."""
    found = _datasets_files(folder)
    if found is None:
        found = [p for p in folder.rglob("*") if p.is_file() and _suffixes(p)[0] in READABLE]
    return found


def _hub_folder(spec: str) -> Path:
    """A local snapshot of a hub dataset (hf://datasets/NAME[@REVISION]); offline it must be cached already."""
    from huggingface_hub import snapshot_download

    repo, _, revision = spec.removeprefix(HUB_PREFIX).partition("@")
    patterns = [f"*{fmt}{comp}" for fmt in READABLE for comp in ("", *COMPRESSED)]
    try:
        return Path(snapshot_download(repo, repo_type="dataset", revision=revision or None, allow_patterns=patterns))
    except Exception as err:  # noqa: BLE001 - any hub failure is one line naming the dataset
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = " (HF_HUB_OFFLINE is set: set HF_HUB_OFFLINE=0 to download)" if offline else ""
        raise InputError(f"hub dataset {repo} unavailable: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}{hint}") from None


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (searched recursively for readable files), globs and hub datasets, sorted and unique."""
    found: list[Path] = []
    for spec in inputs:
        path = _hub_folder(spec) if spec.startswith(HUB_PREFIX) else Path(spec)
        if path.is_dir():
            matches = _folder_files(path)
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


def _decompress(data: bytes, comp: str) -> tuple[bytes, str | None]:
    """Decompress chunk by chunk, so a cut or corrupt stream keeps everything before the break.

    Returns the bytes and, when the stream broke, why (the caller reports it and keeps the bytes).
    """
    if not comp:
        return data, None
    if comp == ".gz":
        new = lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)  # noqa: E731
        errors = (zlib.error,)
    else:
        import zstandard

        new = zstandard.ZstdDecompressor().decompressobj
        errors = (zstandard.ZstdError,)
    out, rest, pos = [], data, 0
    while rest.strip(b"\x00"):
        d, eof = new(), False
        for start in range(0, len(rest), CHUNK):
            try:
                out.append(d.decompress(rest[start:start + CHUNK]))
            except errors as err:
                return b"".join(out), f"corrupt {comp[1:]} data near byte {pos + start}: {err}"
            if d.eof:
                pos, rest, eof = pos + start, d.unused_data + rest[start + CHUNK:], True
                break
        if not eof:
            return b"".join(out), f"{comp[1:]} stream cut short after {len(data)} bytes (no end-of-stream marker)"
    return b"".join(out), None


def decode(data: bytes, partial: bool = False) -> str:
    """UTF-8 (with or without BOM) or BOM-marked UTF-16/32; anything else raises UnicodeDecodeError.

    `partial` (a stream cut short) drops an incomplete character at the very end instead of failing.
    """
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        encoding = "utf-32"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    return codecs.getincrementaldecoder(encoding)().decode(data, final=not partial)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more chars]"


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


JSON_ERRORS = (ValueError, RecursionError)  # JSONDecodeError, and what json raises past its limits


def iter_json_array(text: str, limit: int) -> Iterator[RawItem]:
    """Parse a JSON array element by element, keeping every record before a broken spot.

    A trailing comma is reported and skipped; anything else unparseable ends the array, and its
    tail becomes one quarantine item with the offset where reading stopped.
    """
    try:
        data = json.loads(text)
        yield from (RawItem(i, obj) for i, obj in enumerate(data))
        return
    except JSON_ERRORS:
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
        except JSON_ERRORS as err:
            tail = text[pos:]
            yield RawItem(index, raw=_cut(tail, limit), offset=pos,
                          error=f"unreadable JSON from char {pos} to end of file ({len(tail)} chars): {_why(err)}")
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
            except JSON_ERRORS as err:
                yield RawItem(index, raw=_cut(text, limit), offset=lineno, error=f"line {lineno}: bad JSON: {_why(err)}")
        index += 1


def iter_csv(text: str, sep: str, limit: int) -> Iterator[RawItem]:
    """Rows as dicts of strings; a row with the wrong number of fields is a parse error.

    Blank rows are skipped and not counted, as blank JSON Lines are.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
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


def _table_items(path: Path, fmt: str) -> list[RawItem]:
    """Rows of a Parquet or Arrow file (IPC stream, as datasets writes it, or IPC file)."""
    if fmt == ".parquet":
        frame = pl.read_parquet(path)
    else:
        try:
            frame = pl.read_ipc_stream(path)
        except pl.exceptions.PolarsError:
            frame = pl.read_ipc(path)
    return [RawItem(i, obj) for i, obj in enumerate(frame.to_dicts())]


def _text_items(text: str, fmt: str, limit: int, csv_sep: str) -> Iterator[RawItem]:
    """Records of a decoded CSV/TSV or JSON file (an array, one object, or JSON Lines saved as .json)."""
    if fmt in (".csv", ".tsv"):
        yield from iter_csv(text, "\t" if fmt == ".tsv" else csv_sep, limit)
        return
    start = _skip_ws(text, 0)
    if start >= len(text):
        return
    if text[start] == "[":
        yield from iter_json_array(text, limit)
        return
    try:
        yield RawItem(0, json.loads(text))
    except JSON_ERRORS:
        yield from iter_json_lines(text.encode("utf-8"), limit)


def _non_blank_lines(data: bytes) -> int:
    return sum(map(bool, map(bytes.strip, data.splitlines())))


def read_file(path: Path, limit: int = 2000, csv_sep: str = ",") -> tuple[list[RawItem], int]:
    """Every record of one file, and its non-blank lines (rows for Parquet/Arrow), counted as read.

    A file that cannot be read at all, or holds nothing, is one 'read' item; a compressed stream
    that breaks keeps the records before the break and adds one 'read' item saying where.
    """
    fmt, comp = _suffixes(path)
    broken = None
    try:
        if fmt in (".parquet", ".arrow"):
            items = _table_items(path, fmt)
            lines = len(items)
        else:
            data, broken = _decompress(path.read_bytes(), comp)
            if data.startswith(WIDE_BOMS):  # UTF-16/32 JSON Lines: decode whole, then split lines
                data = decode(data, partial=bool(broken)).encode("utf-8")
            lines = _non_blank_lines(data)
            if fmt in (".jsonl", ".ndjson"):
                items = list(iter_json_lines(data, limit))
            else:
                items = list(_text_items(decode(data, partial=bool(broken)), fmt, limit, csv_sep))
    except Exception as err:  # noqa: BLE001 - a file we cannot open or decode is data, not a crash
        reason = f"not UTF-8 ({err.reason} at byte {err.start})" if isinstance(err, UnicodeDecodeError) else f"{type(err).__name__}: {err}"
        return [RawItem(None, stage="read", error=f"cannot read {path.name}: {str(reason).splitlines()[0]}")], 0
    if broken:
        items.append(RawItem(None, stage="read", error=f"{path.name}: {broken}; the records before it are kept"))
    elif not items:
        items.append(RawItem(None, stage="read", error=f"{path.name} is empty: it holds no records"))
    return items, lines


def read_items(path: Path, limit: int = 2000, csv_sep: str = ",") -> Iterator[RawItem]:
    """Every record of one file, as `read_file` reads them."""
    yield from read_file(path, limit, csv_sep)[0]


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


ROW_GROUP = 50_000  # rows per batch and row group of a streamed write: fixed, so the bytes do not depend on threads


def batches(path: str | Path, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
    """A Parquet file as frames of ROW_GROUP rows (fewer for the last), read one at a time; an empty file is
    one empty frame, so its schema still reaches the writer."""
    import pyarrow.parquet as pq

    empty = True
    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=ROW_GROUP, columns=columns, use_threads=False):
        empty = False
        yield pl.from_arrow(batch)
    if empty:
        yield pl.read_parquet(path, columns=columns)


def write_batches(frames: Iterator[pl.DataFrame], path: str | Path) -> Path:
    """`write_parquet` for frames of one schema (at least one, maybe empty) that arrive one at a time, each its own
    row group, written atomically: a million rows are copied in a few hundred MB (polars' sink held 1.2 GB)."""
    import pyarrow.parquet as pq

    def write(tmp: str) -> None:
        writer = None
        try:
            for frame in frames:
                table = frame.to_arrow()
                writer = writer or pq.ParquetWriter(tmp, table.schema, compression="zstd", write_statistics=True)
                if frame.height:
                    writer.write_table(table, row_group_size=frame.height)
        finally:
            if writer is not None:
                writer.close()

    return write_atomic(path, write)


def write_merged(base: str | Path, changed: pl.DataFrame, path: str | Path) -> Path:
    """`base` (a Parquet file) with `changed`'s columns put in, as `base.with_columns(changed)` would order them,
    streamed: `changed` holds the same rows in the same order, and only the columns a step read or made."""
    names = list(pl.read_parquet_schema(base))
    kept = [c for c in names if c not in changed.columns]
    order = [*names, *(c for c in changed.columns if c not in names)]

    def merged() -> Iterator[pl.DataFrame]:
        offset = 0
        for part in batches(base, kept):
            yield part.hstack(changed.slice(offset, part.height)).select(order)
            offset += part.height

    return write_batches(merged(), path)


def write_json(data: dict, path: str | Path) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"))


def write_text(text: str, path: str | Path) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
