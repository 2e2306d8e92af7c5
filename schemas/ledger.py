"""Ledger and quarantine columns, and the one enum of drop reasons.

The columns every ledger has are named, typed and explained here; each stage module declares the
columns it adds in its own `COLUMNS`, and `pipeline.report.columns` gathers them all for `winnow inspect`.
"""

from enum import StrEnum

import polars as pl

MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})


class DropReason(StrEnum):
    """Why a record left the curated set; the stage that set it is in `drop_stage`."""

    # heuristics
    EMPTY_RESPONSE = "empty_response"
    SHORT_RESPONSE = "short_response"
    LONG_INSTRUCTION = "long_instruction"
    LONG_RESPONSE = "long_response"
    ECHO = "echo"
    REFUSAL = "refusal"
    MODEL_IDENTITY = "model_identity"
    REPETITION = "repetition"
    LOW_ALPHA = "low_alpha"
    UNBALANCED_CODE = "unbalanced_code"
    TRUNCATED = "truncated"
    PLACEHOLDER = "placeholder"
    UNSUPPORTED_MODALITY = "unsupported_modality"
    # language, decontamination, PII
    LANGUAGE = "language"
    LANGUAGE_MISMATCH = "language_mismatch"
    CONTAMINATED = "contaminated"
    PII = "pii"
    # dedup
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    SEMANTIC_DUPLICATE = "semantic_duplicate"
    SEEN_IN_EARLIER_RUN = "seen_in_earlier_run"
    # selection
    BELOW_QUALITY_FLOOR = "below_quality_floor"
    TOO_SIMILAR_TO_SELECTED = "too_similar_to_selected"
    QUOTA_FULL = "quota_full"
    BUDGET_EXHAUSTED = "budget_exhausted"


# column -> (dtype, meaning). Stages add the columns they own; these are always present.
LEDGER_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "id": (pl.String, "stable id: the content_hash, with -1, -2... for later exact copies of one conversation"),
    "content_hash": (pl.String, "sha256 (32 hex) of the normalised messages"),
    "source": (pl.String, "input file the record came from"),
    "source_index": (pl.Int64, "position of the record in its file (0-based)"),
    "format": (pl.String, "detected input format (alpaca, dolly, sharegpt, openai, ...)"),
    "messages": (pl.List(MESSAGE), "the conversation: list of {role, content}"),
    "instruction": (pl.String, "all user turns joined by a blank line"),
    "response": (pl.String, "all assistant turns joined by a blank line"),
    "n_turns": (pl.Int32, "number of assistant turns"),
    "rejected_messages": (pl.List(MESSAGE), "preference pairs (HH-RLHF `chosen`/`rejected`): the rejected conversation, "
                          "kept for a later preference export; `messages` is the chosen one. Null for other formats"),
    "category": (pl.String, "task type, from the source when given"),
    "category_source": (pl.String, "'given' (from the source) or 'inferred'"),
    "drop_stage": (pl.String, "stage that dropped the record; null while alive"),
    "drop_reason": (pl.String, "DropReason code; null while alive"),
    "drop_detail": (pl.String, "human-readable evidence for the drop"),
}

# Set when the run is exported.
STAGE_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "status": (pl.String, "final fate: 'curated' or 'rejected'"),
}

QUARANTINE_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "source": (pl.String, "input file"),
    "source_index": (pl.Int64, "record position in the file, or null when no record boundary is known"),
    "offset": (pl.Int64, "byte offset (JSON) or line number (JSONL, CSV) of the bad spot, when known"),
    "stage": (pl.String, "'read' (file unreadable, empty, or its compressed stream cut short), 'parse' (not valid "
              "JSON/CSV) or 'validate' (wrong shape)"),
    "error": (pl.String, "what was wrong, in one line"),
    "raw": (pl.String, "the raw text of the record, cut to `ingest.max_raw_chars`"),
}


# One row per input file, counted while it was read (manifest `read`); the counts check holds the
# ledger and the quarantine to these numbers.
READ_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "source": (pl.String, "input file"),
    "format": (pl.String, "detected input format, null when none matched"),
    "lines": (pl.Int64, "non-blank lines of text (rows for Parquet and Arrow)"),
    "records": (pl.Int64, "records read, parsed or not: each has a source_index in the ledger or the quarantine"),
    "notes": (pl.Int64, "quarantine rows about the file rather than a record (unreadable, empty, cut short, trailing comma)"),
    "ledger_rows": (pl.Int64, "conversations validated (a self-instruct record gives one per instance)"),
    "quarantine_rows": (pl.Int64, "quarantine rows written for the file"),
}


def empty_frame(columns: dict[str, tuple[pl.DataType, str]]) -> pl.DataFrame:
    """A zero-row frame with the given columns, so empty inputs still write a typed file."""
    return pl.DataFrame(schema={name: dtype for name, (dtype, _) in columns.items()})
