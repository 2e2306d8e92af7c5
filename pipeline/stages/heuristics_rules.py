"""The heuristics stage's rules: each a drop reason, a polars condition and an evidence expression.

Rules are built from the config; patterns are joined into one case-insensitive alternation per rule,
and their word boundaries made ASCII, which keeps the regex engine on its fast DFA path.
"""

from dataclasses import dataclass

import polars as pl

from schemas.config.heuristics import HeuristicsConfig
from schemas.ledger import DropReason as R

DANGLING = "the a an and or of to that which whose is are was were but because their its your my such than into from by"
MIN_VISIBLE = 20  # responses with fewer visible characters are never judged symbol soup


@dataclass(frozen=True)
class Rule:
    reason: R
    hit: pl.Expr
    detail: pl.Expr


def _alternatives(patterns: tuple[str, ...]) -> str:
    """One alternation; word boundaries become ASCII ones (Unicode ones push the engine off its DFA)."""
    return "|".join(f"(?:{p})" for p in patterns).replace(r"\b", r"(?-u:\b)")


def _any_of(patterns: tuple[str, ...]) -> str:
    return f"(?i)(?:{_alternatives(patterns)})"


def _quoted(expr: pl.Expr, where: str) -> pl.Expr:
    return pl.format(f'{where} "{{}}"', expr.str.slice(0, 80))


def _pattern_rule(reason: R, patterns: tuple[str, ...] | None, column: str) -> list[Rule]:
    if not patterns:
        return []
    regex = _any_of(patterns)
    return [Rule(reason, pl.col(column).str.contains(regex), _quoted(pl.col(column).str.extract(regex, 0), "matched"))]


def _line_rule(reason: R, patterns: tuple[str, ...] | None) -> list[Rule]:
    """A whole line of the instruction or the response matches one of the patterns."""
    if not patterns:
        return []
    regex = rf"(?i)(?:^|\n)[ \t]*({_alternatives(patterns)})[ \t]*(?:\n|$)"
    where = pl.when(pl.col("instruction").str.contains(regex))
    return [Rule(reason, pl.col("instruction").str.contains(regex) | pl.col("response").str.contains(regex),
                 where.then(_quoted(pl.col("instruction").str.extract(regex, 1), "instruction line"))
                 .otherwise(_quoted(pl.col("response").str.extract(regex, 1), "response line")))]


def _limit_rules(cfg: HeuristicsConfig) -> list[Rule]:
    rules = [Rule(R.EMPTY_RESPONSE, pl.col("response_chars") == 0, pl.lit("response is empty"))]
    if cfg.min_response_chars is not None:
        number = pl.col("response").str.strip_chars().str.contains(r"^[-+]?\d+(?:[.,]\d+)?%?$")  # "8" answers a sum in full
        rules.append(Rule(R.SHORT_RESPONSE, (pl.col("response_chars") < cfg.min_response_chars) & ~number,
                          pl.format(f"response has {{}} chars < {cfg.min_response_chars}", pl.col("response_chars"))))
    for reason, part in ((R.LONG_INSTRUCTION, "instruction"), (R.LONG_RESPONSE, "response")):
        for unit in ("chars", "words"):
            limit = getattr(cfg, f"max_{part}_{unit}")
            if limit is not None:
                col = pl.col(f"{part}_{unit}")
                rules.append(Rule(reason, col > limit, pl.format(f"{part} has {{}} {unit} > {limit}", col)))
    return rules


def _echo_rule() -> list[Rule]:
    """The response is the instruction, or its input (all after the first paragraph), verbatim."""
    response, instruction = pl.col("response").str.strip_chars(), pl.col("instruction").str.strip_chars()
    input_part = pl.col("instruction").str.splitn("\n\n", 2).struct.field("field_1").str.strip_chars()
    hit = (response != "") & ((response == instruction) | (response == input_part))
    return [Rule(R.ECHO, hit, pl.when(response == instruction).then(pl.lit("response repeats the instruction"))
                 .otherwise(pl.lit("response repeats the instruction's input (all after its first paragraph)")))]


def _shape_rules(cfg: HeuristicsConfig) -> list[Rule]:
    rules = []
    n = cfg.repetition_ngram
    if cfg.max_repeated_ngram_share is not None:
        share = pl.col("ngram_repeat_share")
        rules.append(Rule(R.REPETITION, share > cfg.max_repeated_ngram_share,
                          pl.format(f"repeated {n}-gram share {{}} > {cfg.max_repeated_ngram_share}", share.round(2))))
    if cfg.max_repeated_line_share is not None:
        share = pl.col("line_repeat_share")
        rules.append(Rule(R.REPETITION, share > cfg.max_repeated_line_share,
                          pl.format(f"repeated line share {{}} > {cfg.max_repeated_line_share}", share.round(2))))
    if cfg.min_alnum_share is not None:
        share = pl.col("alnum_share")
        rules.append(Rule(R.LOW_ALPHA, (pl.col("_visible") >= MIN_VISIBLE) & (share < cfg.min_alnum_share),
                          pl.format(f"letters and digits are {{}} of visible chars < {cfg.min_alnum_share}", share.round(2))))
    if cfg.code_fences:
        fences = {c: pl.col(c).str.count_matches("```", literal=True) for c in ("instruction", "response")}
        rules.append(Rule(R.UNBALANCED_CODE, (fences["response"] % 2 == 1) | (fences["instruction"] % 2 == 1),
                          pl.format("``` fences: {} in instruction, {} in response", fences["instruction"], fences["response"])))
    if cfg.truncated_min_words is not None:
        ends = r"(?:\S*,|" + "|".join(DANGLING.split()) + ")"
        regex = rf"(?:^|\n)[ \t]*(?:\S+[ \t]+){{{cfg.truncated_min_words - 1},}}{ends}$"
        rules.append(Rule(R.TRUNCATED, pl.col("response").str.contains(regex),
                          pl.format('ends mid-sentence: "…{}"', pl.col("response").str.slice(-60))))
    return rules


def rules(cfg: HeuristicsConfig) -> list[Rule]:
    """Every enabled rule, in precedence order."""
    return [*_limit_rules(cfg), *_line_rule(R.PLACEHOLDER, cfg.placeholder_patterns),
            *_pattern_rule(R.REFUSAL, cfg.refusal_patterns, "response"),
            *_pattern_rule(R.MODEL_IDENTITY, cfg.identity_patterns, "response"),
            *_pattern_rule(R.UNSUPPORTED_MODALITY, cfg.modality_patterns, "instruction"),
            *(_echo_rule() if cfg.echo else []), *_shape_rules(cfg)]
