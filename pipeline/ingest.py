"""Ingest and validate: raw files -> canonical conversation rows + quarantine rows.

Per file (shard-friendly): read tolerantly, detect the format, validate each record with its
Pydantic model. Whatever fails is quarantined with its raw text and a one-line error.
"""

import json
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError

from pipeline.io import read_items
from pipeline.normalize import assign_ids, content_hash, normalize_text
from schemas.config import IngestConfig
from schemas.ledger import LEDGER_COLUMNS, QUARANTINE_COLUMNS, empty_frame
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


def _row(conv: Conversation, source: str, index: int, fmt: str) -> dict:
    messages = [{"role": m.role, "content": normalize_text(m.content)} for m in conv.messages]
    return {
        "content_hash": content_hash(messages),
        "source": source,
        "source_index": index,
        "format": fmt,
        "messages": messages,
        "instruction": "\n\n".join(m["content"] for m in messages if m["role"] == "user"),
        "response": "\n\n".join(m["content"] for m in messages if m["role"] == "assistant"),
        "n_turns": sum(m["role"] == "assistant" for m in messages),
        "category": conv.category.strip() if conv.category and conv.category.strip() else None,
    }


def _choose_model(objs: list[dict], cfg: IngestConfig):
    """(format name, model) for a file: a matching field_map wins, then the built-in formats."""
    fmap = cfg.field_map or {}
    if fmap and objs and all(fmap.get(k, k) in objs[0] for k in ("instruction", "output")):
        return "mapped", Mapped
    name = detect_format(objs)
    return (name, MODELS[name]) if name else (None, None)


def ingest_file(path: Path, cfg: IngestConfig) -> tuple[list[dict], list[dict]]:
    """Rows and quarantine rows of one file."""
    source = str(path)
    items = list(read_items(path, cfg.max_raw_chars, cfg.csv_separator))
    quarantine = [dict(source=source, source_index=i.index, offset=i.offset, stage=i.stage, error=i.error, raw=i.raw)
                  for i in items if i.error]
    parsed = [i for i in items if not i.error]
    sniff = [i.obj for i in parsed[:SNIFF] if isinstance(i.obj, dict)]
    fmt, model = _choose_model(sniff, cfg)
    inverse = {v: k for k, v in (cfg.field_map or {}).items()} if fmt == "mapped" else None
    rows = []
    for item in parsed:
        obj = item.obj
        error = None
        if not isinstance(obj, dict):
            error = f"record is a {type(obj).__name__}, expected a JSON object"
        elif model is None:
            error = f"unrecognised record shape (keys: {', '.join(sorted(obj)[:8])}); map it with ingest.field_map"
        else:
            try:
                record = model.model_validate({inverse.get(k, k): v for k, v in obj.items()} if inverse else obj)
                convs = (record.conversations(cfg.skip_leading_replies) if isinstance(record, ShareGPT)
                         else record.conversations())
                rows.extend(_row(conv, source, item.index, fmt) for conv in convs)
            except ValidationError as err:
                error = _one_line(err).replace("Value error, ", "")
            except ValueError as err:
                error = str(err).splitlines()[0]
        if error:
            quarantine.append(dict(source=source, source_index=item.index, offset=None, stage="validate",
                                   error=error, raw=_raw_text(obj, cfg.max_raw_chars)))
    return rows, quarantine


def ingest(paths: list[Path], cfg: IngestConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ledger's first columns for every valid record, and the quarantine, over all files."""
    rows, quarantine = [], []
    for path in paths:
        r, q = ingest_file(path, cfg)
        rows += r
        quarantine += q
    schema = {name: dtype for name, (dtype, _) in LEDGER_COLUMNS.items()}
    if rows:
        ledger = assign_ids(pl.DataFrame(rows, schema={k: schema[k] for k in rows[0] if k in schema}))
        ledger = ledger.with_columns(
            pl.when(pl.col("category").is_not_null()).then(pl.lit("given")).alias("category_source"),
            *(pl.lit(None, pl.String).alias(c) for c in ("drop_stage", "drop_reason", "drop_detail")),
        ).select(*schema)
    else:
        ledger = empty_frame(LEDGER_COLUMNS)
    qframe = pl.DataFrame(quarantine, schema={k: d for k, (d, _) in QUARANTINE_COLUMNS.items()}) if quarantine else empty_frame(QUARANTINE_COLUMNS)
    return ledger, qframe
