"""Rule-based quality filters."""

from pydantic import Field, field_validator

from schemas.config.base import Section


def _check_patterns(patterns: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Compile each pattern with the engine that will run it, so a bad regex fails at config time."""
    import polars as pl

    for p in patterns or ():
        try:
            pl.select(pl.lit("").str.contains(p))
        except pl.exceptions.PolarsError as err:
            why = next((line for line in str(err).splitlines() if line.startswith("error:")), "invalid")
            raise ValueError(f"bad regular expression {p!r}: {why.removeprefix('error: ')}") from None
    return patterns


class HeuristicsConfig(Section):
    """Rule-based quality filters for instruction data; each threshold `None` (or empty list) turns its rule off.

    Patterns are case-insensitive regular expressions in Rust `regex` syntax (no look-around).
    """

    min_response_chars: int | None = Field(2, ge=0, description="Responses shorter than this (stripped) are `short_response`, unless they are a number (a sum's answer "
        "'8' is complete; its low `quality` still keeps it out of selection); empty ones are `empty_response`.")
    max_instruction_chars: int | None = Field(12_000, ge=1, description="Instructions longer than this many characters are `long_instruction`.")
    max_instruction_words: int | None = Field(2_000, ge=1, description="Instructions with more words than this are `long_instruction`.")
    max_response_chars: int | None = Field(16_000, ge=1, description="Responses longer than this many characters are `long_response`.")
    max_response_words: int | None = Field(3_000, ge=1, description="Responses with more words than this are `long_response`.")
    placeholder_patterns: tuple[str, ...] | None = Field(
        (r"\\?<\s*no\s*-?\s*(?:input|output)\s*>[^\n]*", r"[\[(]?no\s*-?\s*(?:input|output)(?:\s+(?:required|needed|necessary|provided|given))?[\])]?\.?",
         r"n/a\.?", r"todo\.?", r"tbd\.?", r"null", r"nan", r"\[(?:insert|placeholder)[^\]\n]{0,40}\]"),
        description="A whole line of the instruction or of the response matching one of these is `placeholder` "
        "(Alpaca's '<noinput>', 'N/A', 'TODO').",
    )
    refusal_patterns: tuple[str, ...] | None = Field(
        (r"(?:^|[.!?]\s+|\n\s*)as an ai(?: language model| assistant| model| chatbot)?,", r"\bas an ai language model, i\b", r"\bas a language model, i\b",
         r"\bi(?:'m| am) sorry, but (?:i|as)\b", r"\bi cannot fulfill\b", r"\bi can(?:'t|not) (?:assist|help) with (?:that|this)\b",
         r"^(?:i'm |i am )?sorry,? (?:but )?(?:i (?:can|am|'m|do)|this (?:task|instruction|request|cannot)|the (?:task|instruction|request|model)|as an?\b)",
         r"(?:^|[.!?]\s+)i(?:'m| am) (?:unable|not able) to (?:provide|assist|help|comply|fulfill|generate|create|perform|draw|produce|play)\b",
         r"\b(?:cannot|can ?not|can't) be (?:completed|fulfilled|performed|done|generated|created|produced)(?: by (?:a|the|an) (?:gpt|language|ai|text)| as it| because it| since it)",
         r"\b(?:gpt|language|ai) model (?:cannot|can't|can not|is not able|is unable)\b", r"\bwhich (?:the|a) (?:gpt |language )?model cannot\b",
         r"\b(?:requires|involves) (?:creating )?(?:a )?(?:visual|audio|non-textual) (?:output|information|content|creative)",
         r"^unable to (?:perform|complete|generate|create|provide)\b", r"^(?:this|the) (?:task|instruction|request) (?:cannot|can't|is not possible)"),
        description="Refusals and AI disclaimers in the response ('As an AI language model,', 'I cannot fulfill', "
        "'I'm sorry, but I', Alpaca's 'cannot be completed by a GPT model') are `refusal`.",
    )
    identity_patterns: tuple[str, ...] | None = Field(
        (r"\bi(?:'m| am) (?:just )?(?:an ai\b|an artificial intelligence|a (?:large )?language model|a virtual assistant|chatgpt|gpt-?\d)",
         r"\bi (?:was|am|have been) (?:trained|developed|created|made) by openai\b", r"\bknowledge cut-?off\b", r"\bmy training data\b",
         r"\bas of my (?:last |latest )?(?:knowledge )?(?:update|training)\b",
         r"\bi (?:do not|don't) have (?:personal )?(?:opinions|feelings|emotions|beliefs|preferences|personal experiences|a physical (?:body|form)|access to (?:the internet|real-time|current|external))"),
        description="Model-identity and knowledge-cutoff statements in the response are `model_identity`.",
    )
    modality_patterns: tuple[str, ...] | None = Field(
        (r"\b(?:see|view|watch|listen to) the (?:attached|enclosed|linked)\b",
         r"\b(?:attached|enclosed) (?:image|photo|picture|file|document|video|audio|recording|screenshot|pdf|spreadsheet)",
         r"\b(?:this|these|the following|the given|the provided|the above|the below|below|above) (?:image|photo|photograph|picture|video|audio|audio clip|recording|screenshot|sketch|drawing|graphic|diagram|gif|cartoon|comic|meme)s?\b",
         r"!\[[^\]]*\]\(", r"https?://\S+\.(?:jpe?g|png|gif|webp|bmp|svg|mp4|mov|mp3|wav)\b",
         r"(?:^|\n)[ \t]*[\[<(][^\]>)\n]{0,30}\b(?:image|photo|picture|video|audio|painting|drawing|chart|graph|screenshot|diagram|link)\b[^\]>)\n]{0,40}[\]>)][ \t]*(?:\n|$)",
         r"(?s:\b(?:article|web ?page|blog|post|video|podcast|tweet|pdf|document)\b.*\n[^\n]*https?://\S+\s*$)"),
        description="Instructions that point at content the data cannot carry (an attached image, a video, a linked "
        "article) are `unsupported_modality`.",
    )
    echo: bool = Field(True, description="A response equal to the instruction or to its last paragraph (the input) is `echo`.")
    repetition_ngram: int = Field(3, ge=1, description="Word n-gram size for the repeated-n-gram share.")
    repetition_min_words: int = Field(20, ge=1, description="Responses with fewer words are never judged repetitive.")
    max_repeated_ngram_share: float | None = Field(0.7, gt=0, le=1, description="Share of the response's word n-grams that repeat an earlier one, above which it is `repetition`.")
    max_repeated_line_share: float | None = Field(0.7, gt=0, le=1, description="Share of the response's non-empty lines (4 or more) that repeat an earlier line, above which it is `repetition`.")
    min_alnum_share: float | None = Field(0.25, gt=0, le=1, description="Responses of 20+ visible characters whose share of letters and digits is below this are `low_alpha` (symbol soup).")
    code_fences: bool = Field(True, description="A response or instruction with an odd number of ``` fences is `unbalanced_code`.")
    truncated_min_words: int | None = Field(
        4, ge=1, description="A response whose last line has at least this many words and ends on a comma or on a lower-case "
        "word no sentence ends with (the, and, of...) is `truncated`.")
    quality_target_words: int = Field(150, ge=1, description="Response length (words) at which the length part of `quality` reaches 1.")

    _patterns = field_validator("placeholder_patterns", "refusal_patterns", "identity_patterns", "modality_patterns")(
        lambda cls, v: _check_patterns(v))
