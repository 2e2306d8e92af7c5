"""Ingest and validate: raw files -> canonical conversation rows + quarantine rows.

Per file (shard-friendly): read tolerantly, detect the format, validate each record with its
Pydantic model. Whatever fails is quarantined with its raw text and a one-line error.
"""

import json
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError

from pipeline.io import read_file
from pipeline.normalize import assign_ids, content_hash, normalize_text
from schemas.config.ingest import IngestConfig
from schemas.ledger import LEDGER_COLUMNS, QUARANTINE_COLUMNS, READ_COLUMNS, empty_frame
from schemas.record import MODELS, Conversation, ShareGPT, _single, _user_text, detect_format

SNIFF = 200  # records looked at to detect a file's format


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


def ingest_file(path: Path, cfg: IngestConfig) -> tuple[list[dict], list[dict], dict]:
    """Rows and quarantine rows of one file, and what was read from it (READ_COLUMNS)."""
    source = utf8_safe(str(path))
    items, lines = read_file(path, cfg.max_raw_chars, cfg.csv_separator)
    quarantine = [dict(source=source, source_index=i.index, offset=i.offset, stage=i.stage, error=i.error, raw=i.raw)
                  for i in items if i.error]
    parsed = [i for i in items if not i.error]
    sniff = [i.obj for i in parsed[:SNIFF] if isinstance(i.obj, dict)]
    fmt, model = _choose_model(sniff, cfg)
    inverse = {v: k for k, v in (cfg.field_map or {}).items()} if fmt == "mapped" else None
    rows = []
    for item in parsed:
        got, error = _validate(item.obj, model, inverse, cfg, source, item.index, fmt)
        rows += got
        if error:
            quarantine.append(dict(source=source, source_index=item.index, offset=None, stage="validate",
                                   error=error, raw=_raw_text(item.obj, cfg.max_raw_chars)))
    for q in quarantine:
        q["error"], q["raw"] = utf8_safe(q["error"]), utf8_safe(q["raw"])
    read = {"source": source, "format": fmt, "lines": lines, "records": sum(i.index is not None for i in items),
            "notes": sum(i.index is None for i in items), "ledger_rows": len(rows), "quarantine_rows": len(quarantine)}
    return rows, quarantine, read


ROW_COLUMNS = ("content_hash", "source", "source_index", "format", "messages", "instruction", "response", "n_turns",
               "rejected_messages", "category")  # what `_row` gives; ids and marks come in `combine`


def _frame(rows: list[dict], columns: dict[str, tuple[pl.DataType, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={k: d for k, (d, _) in columns.items()}) if rows else empty_frame(columns)


def ingest_part(path: Path, cfg: IngestConfig) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """One file's rows (before ids), quarantine rows and read counts: ingest is mapped over files with this."""
    rows, quarantine, read = ingest_file(path, cfg)
    return _frame(rows, {c: LEDGER_COLUMNS[c] for c in ROW_COLUMNS}), _frame(quarantine, QUARANTINE_COLUMNS), _frame([read], READ_COLUMNS)


def combine(parts: list[tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The first ledger (ids assigned across all files, in input order), the quarantine and the read counts."""
    rows = pl.concat([p[0] for p in parts]) if parts else _frame([], {c: LEDGER_COLUMNS[c] for c in ROW_COLUMNS})
    ledger = assign_ids(rows).with_columns(
        pl.when(pl.col("category").is_not_null()).then(pl.lit("given")).alias("category_source"),
        *(pl.lit(None, pl.String).alias(c) for c in ("drop_stage", "drop_reason", "drop_detail")),
    ).select(*LEDGER_COLUMNS)
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
