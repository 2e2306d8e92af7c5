"""How raw files become canonical conversations."""

from pydantic import Field

from schemas.config.base import Section


class IngestConfig(Section):
    """How raw files become canonical conversations."""

    field_map: dict[str, str] | None = Field(
        None,
        description="Map a custom shape onto Alpaca fields, e.g. {instruction: question, output: answer}. "
        "Keys: instruction, input, output, system, category. A file whose keys it names is read through it, "
        "before the built-in formats are tried.",
    )
    max_raw_chars: int = Field(2000, ge=100, description="Raw text kept per quarantine row.")
    csv_separator: str = Field(",", min_length=1, max_length=1, description="Separator for .csv files (.tsv uses tab).")
    skip_leading_replies: bool = Field(
        True, description="ShareGPT dumps often open with the assistant's reply to a message they lost (198 of the "
        "566 conversations of ../shared/data's truncated ShareGPT file). True skips those leading assistant turns, as "
        "FastChat does, and keeps the rest of the conversation; False quarantines the conversation.")
