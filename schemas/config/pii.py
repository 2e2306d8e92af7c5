"""PII detection."""

from typing import Literal

from pydantic import Field

from schemas.config.base import Section


class PiiConfig(Section):
    """Personal data found in records: flag, and drop, redact or keep."""

    action: Literal["drop", "redact", "keep"] = Field(
        "keep", description="Rows that carry PII: 'drop' them (`pii`), 'redact' them in the curated output "
        "([EMAIL], [PHONE], [IP], [CARD]), or 'keep' them as they are (flagged in the ledger either way).")
    kinds: tuple[Literal["email", "phone", "ip", "card"], ...] = Field(
        ("email", "phone", "ip", "card"), description="What is looked for; a card is a 13-19 digit number with a Visa, Mastercard, Amex or "
        "Discover prefix and length that passes the Luhn check.")
    ignore_example_domains: bool = Field(
        True, description="E-mail addresses at reserved example domains (example.com/.org/.net, .test, .example, "
        ".invalid, .localhost) are fictional and not flagged.")
