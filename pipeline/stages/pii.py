"""PII: e-mail addresses, phone numbers, IP addresses and payment-card numbers, flagged per row.

The ledger always carries the flags; `pii.action` then drops the rows (`pii`), or asks the flow to
`redact` the curated output, or keeps them. Card numbers count only with an issuer's prefix and
length and a valid Luhn checksum, so order numbers and long sums are not cards. Phone numbers need
separators in the usual places (555-123-4567, (555) 123 4567, +44 20 7946 0958), so plain long
numbers are not phones.
"""

import polars as pl

from pipeline.mark import mark
from pipeline.stage import Stage, StageName
from schemas.config.pii import PiiConfig
from schemas.ledger import DropReason

PATTERNS = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "phone": r"(?:\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]\d{2,4}){2,4}|(?:\+?1[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4})(?-u:\b)",
    "ip": r"(?-u:\b)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?-u:\b)"
          r"|(?-u:\b)(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?-u:\b)",
    "card": r"(?-u:\b)(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{5})(?-u:\b)",
}
CARD_NUMBER = r"^(?:4\d{12}(?:\d{3}){0,2}|5[1-5]\d{14}|2(?:2[2-9]|[3-6]\d|7[01])\d{13}|3[47]\d{13}|6(?:011|5\d\d)\d{12,15})$"
PLACEHOLDERS = {"email": "[EMAIL]", "phone": "[PHONE]", "ip": "[IP]", "card": "[CARD]"}
EXAMPLE_DOMAIN = r"(?i)@(?:[a-z0-9-]+\.)*(?:example\.(?:com|org|net)|[a-z0-9-]+\.(?:test|example|invalid|localhost))$"
COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    f"pii_{kind}": (pl.Boolean, f"the instruction or response holds {what}")
    for kind, what in (("email", "an e-mail address"), ("phone", "a phone number"), ("ip", "an IP address"),
                       ("card", "a payment-card number (issuer prefix and length, Luhn-valid)"))
}


def card_valid(numbers: pl.Expr) -> pl.Expr:
    """True where a card-like string has a card issuer's prefix and length (Visa, Mastercard, Amex,
    Discover) and its digits pass the Luhn checksum."""
    digits = numbers.str.replace_all(r"\D", "")
    doubled = digits.str.reverse().str.split("").list.eval(pl.element().cast(pl.Int32) * (1 + pl.int_range(pl.len()) % 2))
    luhn = doubled.list.eval(pl.when(pl.element() > 9).then(pl.element() - 9).otherwise(pl.element())).list.sum() % 10 == 0
    return digits.str.contains(CARD_NUMBER) & luhn


def valid_cards(texts: pl.Series) -> pl.DataFrame:
    """(row, card) for every valid card number in each text."""
    found = texts.str.extract_all(PATTERNS["card"]).alias("card").to_frame().with_row_index("row").explode("card")
    return found.drop_nulls("card").filter(card_valid(pl.col("card")))


def _emails(text: pl.Expr, ignore_examples: bool) -> pl.Expr:
    """The e-mail addresses in each text that count: those off the example domains when they are ignored."""
    found = text.str.extract_all(PATTERNS["email"])
    if ignore_examples:
        found = found.list.eval(pl.element().filter(~pl.element().str.contains(EXAMPLE_DOMAIN)))
    return found


def pii(frame: pl.DataFrame, cfg: PiiConfig) -> pl.DataFrame:
    """Add pii_email/phone/ip/card flags for every row; drop flagged alive rows when action is 'drop'."""
    text = pl.concat_str([pl.col("instruction"), pl.col("response")], separator="\n", ignore_nulls=True)
    flags = {
        "email": _emails(text, cfg.ignore_example_domains).list.len() > 0,
        "phone": text.str.contains(PATTERNS["phone"]),
        "ip": text.str.contains(PATTERNS["ip"]),
    }
    frame = frame.with_columns((flags[k] if k in flags and k in cfg.kinds else pl.lit(False)).alias(f"pii_{k}")
                               for k in ("email", "phone", "ip"))
    cards = frame.select(text)
    card_rows = valid_cards(cards.to_series())["row"].unique() if "card" in cfg.kinds else pl.Series([], dtype=pl.UInt32)
    frame = frame.with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).is_in(card_rows.implode()).alias("pii_card"))
    if cfg.action != "drop":
        return frame
    kinds = pl.concat_str([pl.when(pl.col(f"pii_{k}")).then(pl.lit(k)) for k in PLACEHOLDERS], separator=", ", ignore_nulls=True)
    return mark(frame, pl.any_horizontal(f"pii_{k}" for k in PLACEHOLDERS), StageName.PII, DropReason.PII, pl.format("found {}", kinds))


def _literals(texts: pl.Series, cfg: PiiConfig) -> dict[str, str]:
    """The cards and e-mail addresses to replace, as found text -> placeholder: only what the flags count
    (valid cards, e-mails off the example domains when those are ignored)."""
    found = {}
    if "card" in cfg.kinds:
        found |= dict.fromkeys(valid_cards(texts)["card"].to_list(), PLACEHOLDERS["card"])
    if "email" in cfg.kinds:
        emails = pl.select(_emails(pl.lit(texts), cfg.ignore_example_domains)).to_series().explode().drop_nulls()
        found |= dict.fromkeys(emails.to_list(), PLACEHOLDERS["email"])
    return dict(sorted(found.items(), key=lambda kv: (-len(kv[0]), kv[0])))  # longest first: no partial overlaps


def _redact_text(text: pl.Expr, literals: dict[str, str], kinds: tuple[str, ...]) -> pl.Expr:
    if literals:
        text = text.str.replace_many(list(literals), list(literals.values()))
    for kind in ("ip", "phone"):
        if kind in kinds:
            text = text.str.replace_all(PATTERNS[kind], PLACEHOLDERS[kind])
    return text


def redact(frame: pl.DataFrame, cfg: PiiConfig = PiiConfig()) -> pl.DataFrame:
    """Replace the PII the config looks for in messages, instruction, response (and prompt/completion when
    present) with placeholders ([EMAIL], [PHONE], [IP], [CARD]); the flow applies it to the curated output only."""
    string_cols = [c for c in ("instruction", "response", "prompt", "completion") if frame.schema.get(c) == pl.String]
    message_cols = [c for c in ("messages", "prompt", "completion")
                    if isinstance(frame.schema.get(c), pl.List) and isinstance(frame.schema[c].inner, pl.Struct)]
    contents = [frame[c] for c in string_cols] + [frame[c].explode().struct.field("content") for c in message_cols]
    literals = _literals(pl.concat(contents) if contents else pl.Series([], dtype=pl.String), cfg)
    frame = frame.with_columns(_redact_text(pl.col(c), literals, cfg.kinds) for c in string_cols)
    return frame.with_columns(
        pl.col(c).list.eval(pl.element().struct.with_fields(_redact_text(pl.field("content"), literals, cfg.kinds)))
        for c in message_cols)


STAGE = Stage(StageName.PII, lambda frame, cfg, deps: pii(frame, cfg.pii), ("pii",), adds=COLUMNS, per_row=True)
