"""Language stage: the language of each instruction and response, an allow-list, and a mismatch flag.

Only rows still alive are read. Each text is cut to a prefix (code blocks and URLs removed, since
they say nothing about the human language); a prefix with too few letters is `und` without asking
the detector. `lang` is the instruction's language, or the response's where the instruction is
`und`. Whatever the backend answers, `lang` holds one code per language (the BCP-47 primary
subtag: langdetect's zh-cn and zh-tw, and fastText's zh, are all zh), the spelling the config's
`language.allow` and `select.language_quota` use.
"""

import polars as pl

from pipeline.mark import ALIVE, mark
from pipeline.progress import Progress
from pipeline.stage import Stage, StageName
from pipeline.stages.language_detect import UND, LanguageDetector, make_detector
from schemas.config.language import LanguageConfig
from schemas.ledger import DropReason

COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "lang": (pl.String, "language of the instruction as a BCP-47 primary subtag (ISO 639-1 where there is one: en, de, "
             "zh for any Chinese), the response's where the instruction is 'und' (too short to judge); null for rows "
             "dropped before this stage"),
    "lang_response": (pl.String, "language of the response, or 'und'"),
    "lang_mismatch": (pl.Boolean, "instruction and response are judged, and in different languages"),
}


def prefix(text: pl.Expr, max_chars: int) -> pl.Expr:
    """The part of a text the detector reads: no code blocks, no URLs, the first `max_chars` characters."""
    cleaned = text.str.replace_all(r"(?s)```.*?```", " ").str.replace_all(r"https?://\S+", " ")
    return cleaned.str.strip_chars().str.slice(0, max_chars)


def _canonical(code: str | None) -> str:
    try:
        return LanguageConfig.canonical_code(code)
    except (ValueError, AttributeError):
        return UND


def canonical(langs: pl.Series) -> pl.Series:
    """The detector's answers as one code per language (zh-cn, zh-tw, zh -> zh); anything not a code is 'und'."""
    distinct = langs.unique(maintain_order=True)
    return langs.replace_strict(distinct, [_canonical(code) for code in distinct], return_dtype=pl.String)


def detect_texts(texts: pl.Series, cfg: LanguageConfig, detector: LanguageDetector, progress: Progress | None = None) -> pl.Series:
    """Language per text: 'und' below `min_letters` letters (a third as many for Chinese, Japanese and Korean
    characters, which carry a word each and whose script settles the answer), else the detector's answer,
    asked once per distinct text."""
    cjk = texts.str.count_matches(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")
    judgeable = ((texts.str.count_matches(r"\p{L}") >= cfg.min_letters) | (cjk >= -(-cfg.min_letters // 3))).fill_null(False)
    distinct = texts.filter(judgeable).unique(maintain_order=True)
    progress = (progress or Progress("language")).start(distinct.len(), "distinct texts")
    found = canonical(pl.Series(detector.detect(distinct.to_list(), progress.advance), dtype=pl.String))
    return pl.select(pl.when(judgeable).then(texts.replace_strict(distinct, found, default=UND)).otherwise(pl.lit(UND))
                     .alias("lang")).to_series()


def _allowed(lang: pl.Expr, cfg: LanguageConfig) -> pl.Expr:
    admitted = lang.is_in(cfg.allow or [])
    return admitted | (lang == UND) if cfg.keep_undetermined else admitted


def language(frame: pl.DataFrame, cfg: LanguageConfig, detector: LanguageDetector | None = None,
             progress: Progress | None = None) -> pl.DataFrame:
    """Add lang, lang_response, lang_mismatch for alive rows; drop rows outside the allow-list
    (`language`) and, when configured, rows whose two sides disagree (`language_mismatch`)."""
    if not cfg.enabled:
        return frame.with_columns(pl.lit(None, dtype).alias(name) for name, (dtype, _) in COLUMNS.items())
    detector = detector or make_detector(cfg.backend, cfg.min_probability, cfg.workers)
    alive = frame.filter(ALIVE).select("id", prefix(pl.col("instruction"), cfg.max_chars).alias("i"),
                                       prefix(pl.col("response"), cfg.max_chars).alias("r"))
    langs = detect_texts(pl.concat([alive["i"], alive["r"]]), cfg, detector, progress)
    found = alive.select("id", lang_instruction=langs.head(alive.height), lang_response=langs.tail(alive.height))
    found = found.with_columns(
        pl.when(pl.col("lang_instruction") == UND).then("lang_response").otherwise("lang_instruction").alias("lang"),
        ((pl.col("lang_instruction") != UND) & (pl.col("lang_response") != UND)
         & (pl.col("lang_instruction") != pl.col("lang_response"))).alias("lang_mismatch"),
    )
    frame = frame.join(found, on="id", how="left", maintain_order="left")
    if cfg.allow is not None:
        frame = mark(frame, ~_allowed(pl.col("lang"), cfg), StageName.LANGUAGE, DropReason.LANGUAGE,
                     pl.format("language {} not in the allow-list {}", pl.col("lang"), pl.lit(", ".join(cfg.allow))))
    if cfg.drop_mismatch:
        frame = mark(frame, pl.col("lang_mismatch"), StageName.LANGUAGE, DropReason.LANGUAGE_MISMATCH,
                     pl.format("instruction in {}, response in {}", pl.col("lang_instruction"), pl.col("lang_response")))
    return frame.drop("lang_instruction")


def _run(frame: pl.DataFrame, cfg, deps) -> pl.DataFrame:
    return language(frame, cfg.language, deps.detector if cfg.language.enabled else None, deps.progress("language"))


STAGE = Stage(StageName.LANGUAGE, _run, ("language",), adds=COLUMNS, per_row=True)
