"""Ingest and validate: raw files -> canonical conversation rows + quarantine rows.

Per file (shard-friendly), a chunk of records at a time: read tolerantly, detect the format (from the
first records), validate each record with its Pydantic model. Whatever fails is quarantined with its
raw text and a one-line error.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError

from pipeline.normalize import content_hash, copy_numbers, normalize_text, with_ids
from pipeline.read import RawItem, read_chunks
from schemas.config.execution import INGEST_CHUNK
from schemas.config.ingest import IngestConfig
from schemas.ledger import LEDGER_COLUMNS, QUARANTINE_COLUMNS, READ_COLUMNS, empty_frame
from schemas.record import MODELS, Conversation, ShareGPT, _single, _user_text, detect_format

SNIFF = 200  # records looked at to detect a file's format
ROW_COLUMNS = ("content_hash", "source", "source_index", "format", "messages", "instruction", "response", "n_turns",
               "rejected_messages", "category")  # what `_row` gives; ids and marks come in `combine`
ROW_SCHEMA = {c: LEDGER_COLUMNS[c] for c in ROW_COLUMNS}


class Mapped(BaseModel):
    """Any other shape, after `ingest.field_map` renamed its keys."""

    model_config = ConfigDict(extra="ignore")
    instruction: StrictStr
    input: StrictStr | None = None
    output: StrictStr
    system: StrictStr | None = None
    category: StrictStr | None = None

    def conversations(self):
        return [_single(_user_text(self.instruction, self.input), self.output, self.category or None, self.system)]


def _one_line(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(p) for p in e["loc"] if p != "conversations_") or "record"
        parts.append(f"{loc}: {e['msg']}")
    more = f" (+{err.error_count() - 3} more)" if err.error_count() > 3 else ""
    return "; ".join(parts) + more


def _raw_text(obj: object, limit: int) -> str:
    text = json.dumps(obj, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more chars]"


def utf8_safe(text: str | None) -> str | None:
    """The text with lone surrogates (JSON's "\\ud800", which Python accepts) spelled as escapes, so Parquet can store it."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _surrogate_error(err: UnicodeEncodeError) -> str:
    return (f"text holds a lone surrogate ({ascii(err.object[err.start:err.end])}): a broken \\u escape in the "
            "source, which UTF-8 (and so Parquet) cannot store")


def _messages(conv_messages) -> list[dict]:
    return [{"role": m.role, "content": normalize_text(m.content)} for m in conv_messages]


def _row(conv: Conversation, source: str, index: int, fmt: str) -> dict:
    """One ledger row; raises UnicodeEncodeError when any of its text cannot be stored as UTF-8."""
    messages = _messages(conv.messages)
    rejected = _messages(conv.rejected) if conv.rejected is not None else None
    category = conv.category.strip() if conv.category and conv.category.strip() else None
    "\x1f".join([category or "", *(m["content"] for m in rejected or ())]).encode("utf-8")
    return {
        "content_hash": content_hash(messages),
        "source": source,
        "source_index": index,
        "format": fmt,
        "messages": messages,
        "instruction": "\n\n".join(m["content"] for m in messages if m["role"] == "user"),
        "response": "\n\n".join(m["content"] for m in messages if m["role"] == "assistant"),
        "n_turns": sum(m["role"] == "assistant" for m in messages),
        "rejected_messages": rejected,
        "category": category,
    }


def _choose_model(objs: list[dict], cfg: IngestConfig):
    """(format name, model) for a file: a matching field_map wins, then the built-in formats."""
    fmap = cfg.field_map or {}
    if fmap and objs and all(fmap.get(k, k) in objs[0] for k in ("instruction", "output")):
        return "mapped", Mapped
    name = detect_format(objs)
    return (name, MODELS[name]) if name else (None, None)


def _validate(obj: object, model, inverse: dict | None, cfg: IngestConfig, source: str, index: int, fmt: str) -> tuple[list[dict], str | None]:
    """(ledger rows, None) for a valid record, ([], one-line error) for anything else."""
    if not isinstance(obj, dict):
        return [], f"record is a {type(obj).__name__}, expected a JSON object"
    if model is None:
        return [], f"unrecognised record shape (keys: {', '.join(sorted(obj)[:8])}); map it with ingest.field_map"
    try:
        record = model.model_validate({inverse.get(k, k): v for k, v in obj.items()} if inverse else obj)
        convs = (record.conversations(cfg.skip_leading_replies) if isinstance(record, ShareGPT)
                 else record.conversations())
        return [_row(conv, source, index, fmt) for conv in convs], None
    except ValidationError as err:
        return [], _one_line(err).replace("Value error, ", "")
    except UnicodeEncodeError as err:
        return [], _surrogate_error(err)
    except ValueError as err:
        return [], str(err).splitlines()[0]


def _frame(rows: list[dict], columns: dict[str, tuple[pl.DataType, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={k: d for k, (d, _) in columns.items()}) if rows else empty_frame(columns)


def _sniffed(chunks: Iterator[tuple[list[RawItem], int]]) -> tuple[list[dict], Iterator[tuple[list[RawItem], int]]]:
    """The objects of the first SNIFF records that parsed, and every chunk: chunks are held until that many have
    parsed (the first chunk, unless it is smaller than SNIFF or the file opens with many broken records)."""
    held, parsed = [], 0
    for chunk in chunks:
        held.append(chunk)
        parsed += sum(not i.error for i in chunk[0])
        if parsed >= SNIFF:
            break
    first = [i.obj for items, _ in held for i in items if not i.error][:SNIFF]
    return [o for o in first if isinstance(o, dict)], chain(held, chunks)


def _note(item: RawItem, source: str) -> dict:
    return dict(source=source, source_index=item.index, offset=item.offset, stage=item.stage, error=utf8_safe(item.error),
                raw=utf8_safe(item.raw))


@dataclass(frozen=True)
class Chunk:
    """One chunk of a file ingested: its ledger rows, the quarantine rows of what did not parse (`notes`) and of
    what did not validate (`invalid`), and its share of the file's read counts."""

    rows: pl.DataFrame
    notes: pl.DataFrame
    invalid: pl.DataFrame
    read: dict


def _chunk(items: list[RawItem], lines: int, model, fmt: str | None, cfg: IngestConfig, source: str) -> Chunk:
    inverse = {v: k for k, v in (cfg.field_map or {}).items()} if fmt == "mapped" else None
    rows, invalid = [], []
    for item in items:
        if item.error:
            continue
        got, error = _validate(item.obj, model, inverse, cfg, source, item.index, fmt)
        rows += got
        if error:
            invalid.append(dict(source=source, source_index=item.index, offset=None, stage="validate",
                                error=utf8_safe(error), raw=utf8_safe(_raw_text(item.obj, cfg.max_raw_chars))))
    notes = [_note(i, source) for i in items if i.error]
    read = {"lines": lines, "records": sum(i.index is not None for i in items), "notes": sum(i.index is None for i in items),
            "ledger_rows": len(rows), "quarantine_rows": len(notes) + len(invalid)}
    return Chunk(_frame(rows, ROW_SCHEMA), _frame(notes, QUARANTINE_COLUMNS), _frame(invalid, QUARANTINE_COLUMNS), read)


def ingest_chunks(path: Path, cfg: IngestConfig, rows: int = INGEST_CHUNK) -> tuple[str | None, Iterator[Chunk]]:
    """One file's format (sniffed from its first SNIFF records) and its chunks of `rows` records, validated."""
    source = utf8_safe(str(path))
    sniff, chunks = _sniffed(read_chunks(path, rows, cfg.max_raw_chars, cfg.csv_separator))
    fmt, model = _choose_model(sniff, cfg)
    return fmt, (_chunk(items, lines, model, fmt, cfg, source) for items, lines in chunks)


@dataclass
class Tally:
    """What a file's chunks leave besides their rows, gathered as the rows stream past: the quarantine (small
    beside the rows; export holds it whole) and the read counts."""

    source: str
    format: str | None
    notes: list[pl.DataFrame] = field(default_factory=list)
    invalid: list[pl.DataFrame] = field(default_factory=list)
    counts: dict = field(default_factory=lambda: dict.fromkeys(("lines", "records", "notes", "ledger_rows", "quarantine_rows"), 0))

    def rows(self, chunks: Iterator[Chunk]) -> Iterator[pl.DataFrame]:
        """The chunks' ledger rows, one frame per chunk, keeping the rest here."""
        for chunk in chunks:
            self.notes.append(chunk.notes)
            self.invalid.append(chunk.invalid)
            self.counts = {k: n + chunk.read[k] for k, n in self.counts.items()}
            yield chunk.rows

    def quarantine(self) -> pl.DataFrame:
        """Every quarantine row, as one file read whole lists them: what did not parse, then what did not validate."""
        frames = [f for f in (*self.notes, *self.invalid) if f.height]
        return pl.concat(frames).rechunk() if frames else empty_frame(QUARANTINE_COLUMNS)

    def read(self) -> pl.DataFrame:
        return _frame([{"source": self.source, "format": self.format, **self.counts}], READ_COLUMNS)


def ingest_file(path: Path, cfg: IngestConfig, rows: int = INGEST_CHUNK) -> tuple[Iterator[pl.DataFrame], Tally]:
    """One file's ledger rows as frames of at most `rows` records' rows (iterate them first), and its Tally."""
    fmt, chunks = ingest_chunks(path, cfg, rows)
    tally = Tally(utf8_safe(str(path)), fmt)
    return tally.rows(chunks), tally


def ingest_part(path: Path, cfg: IngestConfig, rows: int = INGEST_CHUNK) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """One file's rows (before ids), quarantine rows and read counts, in memory (the runner streams the rows)."""
    frames, tally = ingest_file(path, cfg, rows)
    return pl.concat(list(frames)).rechunk(), tally.quarantine(), tally.read()


def first_ledger(rows: pl.DataFrame, copies: pl.Series) -> pl.DataFrame:
    """The first ledger's rows for `rows`, given how many earlier rows of the whole input share each one's content
    hash (`copy_numbers`): with that, any slice of the rows is finished on its own."""
    return with_ids(rows, copies).with_columns(
        pl.when(pl.col("category").is_not_null()).then(pl.lit("given")).alias("category_source"),
        *(pl.lit(None, pl.String).alias(c) for c in ("drop_stage", "drop_reason", "drop_detail")),
    ).select(*LEDGER_COLUMNS)


def combine(parts: list[tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The first ledger (ids assigned across all files, in input order), the quarantine and the read counts."""
    rows = pl.concat([p[0] for p in parts]) if parts else empty_frame(ROW_SCHEMA)
    ledger = first_ledger(rows, copy_numbers(rows["content_hash"]))
    quarantine = pl.concat([p[1] for p in parts]) if parts else empty_frame(QUARANTINE_COLUMNS)
    read = pl.concat([p[2] for p in parts]) if parts else empty_frame(READ_COLUMNS)
    return ledger, quarantine, read


def ingest_counted(paths: list[Path], cfg: IngestConfig) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The ledger's first columns for every valid record, the quarantine, and per file what was read."""
    return combine([ingest_part(path, cfg) for path in paths])


def ingest(paths: list[Path], cfg: IngestConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ledger's first columns and the quarantine (`ingest_counted` without the read counts)."""
    ledger, quarantine, _ = ingest_counted(paths, cfg)
    return ledger, quarantine
