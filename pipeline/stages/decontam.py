"""Decontamination: training instructions that contain an evaluation prompt are dropped.

Overlap is n-gram containment: the share of an eval prompt's distinct word n-grams found in a
training instruction. Words are lower-cased letter/digit runs, and each CJK character is a word.
An eval prompt shorter than `ngram` words is one n-gram of its own length (so a short prompt
matches only when it appears whole); prompts under `min_prompt_words` are skipped. The matching
is one join on 64-bit n-gram hashes, never a loop over pairs.
"""

from pathlib import Path

import numpy as np
import polars as pl

from pipeline.mark import ALIVE, mark
from pipeline.read import read_items
from pipeline.stage import Stage, StageName
from schemas.config.decontam import DecontamConfig
from schemas.ledger import DropReason

COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "eval_overlap": (pl.Float64, "largest share of one eval prompt's n-grams found in the instruction (0: none); set on every row"),
    "eval_match": (pl.String, "'benchmark:item' of that eval prompt where the share reaches decontam.threshold, else null"),
}
TOKEN = r"[\p{Han}\p{Hiragana}\p{Katakana}]|[\p{L}\p{M}\p{N}--\p{Han}--\p{Hiragana}--\p{Katakana}]+"
_K = np.uint64(0x9E3779B97F4A7C15)


def _item(obj: dict, index: int) -> str:
    for key, label in (("question_id", "question {}"), ("idx", "idx {}"), ("id", "{}")):
        if obj.get(key) is not None:
            return label.format(obj[key])
    return f"item {index}"


def _prompts(obj: object) -> list[str]:
    """The prompt texts of one eval record, whatever benchmark shape it has."""
    if not isinstance(obj, dict):
        return []
    if isinstance(obj.get("turns"), list):
        return [t for t in obj["turns"] if isinstance(t, str)]
    text = next((obj[k] for k in ("Instruction", "instruction", "prompt", "question") if isinstance(obj.get(k), str)), None)
    if text is None:
        return []
    if isinstance(obj.get("instances"), list):
        inputs = [i.get("input") or "" for i in obj["instances"] if isinstance(i, dict)] or [""]
        return [f"{text}\n\n{x}" if x.strip() else text for x in inputs]
    extra = obj.get("input")
    return [f"{text}\n\n{extra}" if isinstance(extra, str) and extra.strip() else text]


def load_eval_prompts(eval_sets: dict[str, str]) -> pl.DataFrame:
    """(benchmark, item, prompt) for every prompt of every configured eval file, in config order."""
    rows = []
    for name, path in eval_sets.items():
        found = 0
        for raw in read_items(Path(path)):
            if raw.error:
                raise ValueError(f"eval set {name} ({path}): {raw.error}")
            for prompt in _prompts(raw.obj):
                rows.append((name, _item(raw.obj, raw.index), prompt))
                found += 1
        if not found:
            raise ValueError(f"eval set {name} ({path}) holds no prompt (turns, Instruction, instruction, prompt or question)")
    return pl.DataFrame(rows, schema={"benchmark": pl.String, "item": pl.String, "prompt": pl.String}, orient="row")


def _tokens(texts: pl.Series) -> pl.DataFrame:
    """(row, hash) per word of each text, in order."""
    words = texts.str.to_lowercase().str.extract_all(TOKEN).alias("w").to_frame().with_row_index("row")
    return words.explode("w").drop_nulls("w").select("row", pl.col("w").hash())


def _ngrams(tokens: pl.DataFrame, n: int) -> pl.DataFrame:
    """Distinct (row, key) n-gram keys; the key also mixes in n, so n-grams of different sizes never meet."""
    rows, hashes = tokens["row"].to_numpy(), tokens["w"].to_numpy()
    span = max(len(rows) - n + 1, 0)
    key = hashes[:span].copy()
    for k in range(1, n):
        key = key * _K ^ hashes[k: k + span]
    key = key * _K ^ np.uint64(n)
    valid = rows[:span] == rows[n - 1: n - 1 + span]
    return pl.DataFrame({"row": rows[:span][valid], "key": key[valid]}).unique(maintain_order=True)


def _eval_grams(prompts: pl.DataFrame, cfg: DecontamConfig) -> pl.DataFrame:
    """(pid, size, key) for every eval prompt long enough to judge; pid is its row in `prompts`."""
    tokens = _tokens(prompts["prompt"])
    length = tokens.group_by("row").len().filter(pl.col("len") >= cfg.min_prompt_words)
    size = length.select(pl.col("row").alias("pid"), pl.min_horizontal("len", pl.lit(cfg.ngram, pl.UInt32)).alias("size"))
    parts = [_ngrams(tokens.filter(pl.col("row").is_in(group["pid"].implode())), int(n)).rename({"row": "pid"})
             .with_columns(size=pl.lit(n, pl.UInt32)) for (n,), group in size.group_by("size", maintain_order=True)]
    return pl.concat(parts) if parts else pl.DataFrame(schema={"pid": pl.UInt32, "key": pl.UInt64, "size": pl.UInt32})


def overlaps(instructions: pl.Series, prompts: pl.DataFrame, cfg: DecontamConfig) -> pl.DataFrame:
    """(row, pid, matched, share) for every instruction row sharing an n-gram with an eval prompt."""
    grams = _eval_grams(prompts, cfg)
    totals = grams.group_by("pid").agg(total=pl.len())
    tokens = _tokens(instructions)
    pairs = [_ngrams(tokens, int(n)).join(grams.select("pid", "key"), on="key")
             for n in grams["size"].unique().sort().to_list()]
    if not pairs:
        return pl.DataFrame(schema={"row": pl.UInt32, "pid": pl.UInt32, "matched": pl.UInt32, "share": pl.Float64})
    counts = pl.concat(pairs).group_by("row", "pid").agg(matched=pl.len())
    return counts.join(totals, on="pid").select("row", "pid", "matched", (pl.col("matched") / pl.col("total")).alias("share"))


def decontam(frame: pl.DataFrame, cfg: DecontamConfig, eval_prompts: pl.DataFrame) -> pl.DataFrame:
    """Record each row's best eval overlap (every row, so the ledger shows it even for rows dropped
    earlier: one hash join, cheap) and drop alive rows at or above the threshold (`contaminated`).

    Best: highest share, then most n-grams matched, then the benchmark listed first."""
    found = overlaps(frame["instruction"], eval_prompts, cfg)
    ranked = found.sort(["row", "share", "matched", "pid"], descending=[False, True, True, False])
    best = (ranked.unique("row", keep="first", maintain_order=True)
            .join(eval_prompts.with_row_index("pid"), on="pid", how="left"))
    hit = pl.col("share") >= (cfg.threshold if cfg.threshold is not None else 2.0)
    best = best.select("row", pl.col("share").alias("eval_overlap"),
                       pl.when(hit).then(pl.format("{}:{}", "benchmark", "item")).alias("eval_match"))
    frame = (frame.with_row_index("_row").join(best, left_on="_row", right_on="row", how="left", maintain_order="left")
             .drop("_row").with_columns(pl.col("eval_overlap").fill_null(0.0)))
    detail = pl.format("{} (overlap {})", pl.col("eval_match"), pl.col("eval_overlap").round(2))
    return mark(frame, ALIVE & pl.col("eval_match").is_not_null(), StageName.DECONTAM, DropReason.CONTAMINATED, detail)


STAGE = Stage(StageName.DECONTAM, lambda frame, cfg, deps: decontam(frame, cfg.decontam, deps.eval_prompts), ("decontam",),
              adds=COLUMNS, per_row=True, files=lambda cfg: list(cfg.decontam.eval_sets.values()))
