"""PII: flags on real Alpaca records, the card check, drop/keep, and redaction of the curated output."""

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.stages.ingest import ingest
from pipeline.stages.pii import COLUMNS, card_valid, pii, redact
from schemas.config import IngestConfig, PiiConfig

KINDS = ["pii_email", "pii_phone", "pii_ip", "pii_card"]


@pytest.fixture(scope="module")
def alpaca() -> list[dict]:
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca" / "alpaca_data.json"
    if not path.is_file():
        pytest.skip("../shared/data is not present")
    return json.loads(path.read_text(encoding="utf-8"))


def find(records: list[dict], field: str, text: str) -> dict:
    return next(r for r in records if text in r[field])


def ledger(tmp_path: Path, records: list[dict]) -> pl.DataFrame:
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return ingest([path], IngestConfig())[0].sort("source_index")


@pytest.fixture
def real(tmp_path, alpaca) -> pl.DataFrame:
    return ledger(tmp_path, [
        find(alpaca, "instruction", "Design a business card for a tax accountant."),      # e-mail and phone
        find(alpaca, "instruction", "Is the following a valid IPv4 address? 59.187.84.127"),  # an IPv4 address
        find(alpaca, "instruction", "Give an example of a valid credit card number."),      # 4242 4242 4242 4242
        find(alpaca, "input", "01110101 01100001"),                                         # binary, not a card
        find(alpaca, "output", "@example.com"),                                             # example domain only
        alpaca[0],                                                                          # nothing personal
    ])


def test_flags_on_real_records(real):
    out = pii(real, PiiConfig())
    assert out.select(KINDS).rows() == [
        (True, True, False, False), (False, False, True, False), (False, False, False, True),
        (False, False, False, False), (False, False, False, False), (False, False, False, False)]
    assert out["drop_reason"].null_count() == out.height, "action 'keep' only flags"
    assert {c: out.schema[c] for c in COLUMNS} == {c: d for c, (d, _) in COLUMNS.items()}


def test_drop_names_the_kinds(real):
    out = pii(real, PiiConfig(action="drop"))
    assert out["drop_reason"].to_list() == ["pii", "pii", "pii", None, None, None]
    assert out["drop_detail"].to_list()[:3] == ["found email, phone", "found ip", "found card"]
    only_email = pii(real, PiiConfig(action="drop", kinds=("email",), ignore_example_domains=False))
    assert only_email["drop_reason"].to_list() == ["pii", None, None, None, "pii", None]


def test_card_check():
    cards = pl.Series(["4111 1111 1111 1111", "4111-1111-1111-1112", "378282246310005", "614401945489408",
                       "01110101 01100001 01110010 01101001"])
    assert pl.select(card_valid(pl.lit(cards))).to_series().to_list() == [True, False, True, False, False]


def test_redact_rewrites_text_and_messages(real):
    out = redact(pii(real, PiiConfig(action="redact")))
    card = out["response"][2]
    assert "4242" not in card and "[CARD]" in card
    business = out["response"][0]
    assert "[EMAIL]" in business and "[PHONE]" in business and "@" not in business
    assert "[IP]" in out["instruction"][1] and "59.187.84.127" not in out["instruction"][1]
    assert [m["content"] for m in out["messages"][0]] == [out["instruction"][0], business]
    assert out["messages"][0][1]["role"] == "assistant"
    columns = ["instruction", "response", "messages"]
    assert out[[3, 5]].select(columns).equals(real[[3, 5]].select(columns)), "rows without PII are untouched"


def test_redact_handles_prompt_completion_columns():
    frame = pl.DataFrame({"prompt": ["Mail me at ana.silva@gmail.com"], "completion": ["Call +44 20 7946 0958"]})
    assert redact(frame).row(0) == ("Mail me at [EMAIL]", "Call [PHONE]")


def test_redact_follows_the_kinds_and_keeps_example_addresses():
    frame = pl.DataFrame({"response": ["Write to ana.silva@gmail.com or test@example.com, call +44 20 7946 0958"]})
    assert redact(frame)["response"][0] == "Write to [EMAIL] or test@example.com, call [PHONE]"
    only_email = redact(frame, PiiConfig(kinds=("email",), ignore_example_domains=False))["response"][0]
    assert only_email == "Write to [EMAIL] or [EMAIL], call +44 20 7946 0958"
