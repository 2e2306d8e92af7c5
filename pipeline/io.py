"""File I/O: expand inputs into files, write Parquet and JSON atomically (reading records is pipeline.read)."""

import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl

READABLE = (".json", ".jsonl", ".ndjson", ".parquet", ".arrow", ".csv", ".tsv")
COMPRESSED = (".gz", ".zst")
HUB_PREFIX = "hf://datasets/"
DATASETS_MARKERS = ("state.json", "dataset_dict.json")  # a folder written by datasets' save_to_disk
_UMASK = os.umask(0)
os.umask(_UMASK)


class InputError(ValueError):
    """An input argument that names nothing readable."""


def suffixes(path: Path) -> tuple[str, str]:
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
        found = [p for p in folder.rglob("*") if p.is_file() and suffixes(p)[0] in READABLE]
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


def rows_by_id(source: pl.DataFrame | pl.LazyFrame | str | Path, ids: pl.Series, columns: list[str] | None = None) -> pl.DataFrame:
    """The rows of these ids, in their order (all columns, or `columns`). From a file it is a filter on its id
    column, which the Parquet reader applies first: only those rows are decoded whole."""
    scan = pl.scan_parquet(source) if isinstance(source, (str, Path)) else source.lazy()
    if columns is not None:
        scan = scan.select("id", *columns)
    found = scan.filter(pl.col("id").is_in(ids.implode())).collect(engine="streaming")
    order = ids.to_frame("id").with_row_index("_order")
    return found.join(order, on="id").sort("_order").drop("_order")


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
