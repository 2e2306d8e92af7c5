"""Semantic dedup judges only the languages its embedding model covers, each within itself: hand-made vectors,
and real Chinese and English Alpaca prompts through the packaged (English-only) MiniLM."""

import json

import numpy as np
import polars as pl
import pytest

from pipeline.stages.embed import PACKAGED_MODEL, SentenceTransformerEmbedder, embed
from pipeline.stages.language import language
from pipeline.stages.semantic import semantic_dedup
from schemas.config import ConfigError, EmbedConfig, LanguageConfig, SemanticConfig, parse_config

SAME, OTHER = [1.0, 0.0], [0.0, 1.0]


def ledger(rows: list[tuple[str, str | None, list[float]]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """rows: (id, lang, vector), best first by quality -> (frame, embeddings)."""
    frame = pl.DataFrame({
        "id": [r[0] for r in rows], "lang": pl.Series([r[1] for r in rows], dtype=pl.String),
        "quality": [1.0 - i / 100 for i in range(len(rows))],
        **{c: pl.Series([None] * len(rows), dtype=pl.String) for c in ("drop_stage", "drop_reason", "drop_detail", "dup_of")},
    })
    vectors = pl.DataFrame({"id": frame["id"], "embedding": [r[2] for r in rows]},
                           schema={"id": pl.String, "embedding": pl.Array(pl.Float32, 2)})
    return frame, vectors


def dup_of(frame: pl.DataFrame, embeddings: pl.DataFrame, cfg: SemanticConfig) -> dict[str, str]:
    out = semantic_dedup(frame, embeddings, cfg).filter(pl.col("drop_reason") == "semantic_duplicate")
    return dict(zip(out["id"], out["dup_of"]))


def test_uncovered_languages_are_not_judged_and_languages_never_meet():
    frame, vectors = ledger([("en1", "en", SAME), ("en2", "en", SAME), ("zh1", "zh", SAME), ("zh2", "zh", SAME),
                             ("fr1", "fr", OTHER), ("fr2", "fr", OTHER)])
    assert dup_of(frame, vectors, SemanticConfig()) == {"en2": "en1"}
    assert dup_of(frame, vectors, SemanticConfig(languages=["en", "zh"])) == {"en2": "en1", "zh2": "zh1"}
    assert dup_of(frame, vectors, SemanticConfig(languages=None)) == {"en2": "en1", "zh1": "en1", "zh2": "en1", "fr2": "fr1"}


def test_undetermined_and_undetected_rows_count_as_the_first_language():
    frame, vectors = ledger([("en", "en", SAME), ("und", "und", SAME), ("none", None, SAME), ("zh", "zh", OTHER),
                             ("zh_und", "und", OTHER)])
    assert dup_of(frame, vectors, SemanticConfig()) == {"und": "en", "none": "en"}
    assert dup_of(frame, vectors, SemanticConfig(languages=["zh", "en"])) == {"none": "und", "zh_und": "zh"}
    without_lang = dup_of(frame.with_columns(lang=pl.lit(None, pl.String)), vectors, SemanticConfig())
    assert without_lang == {"und": "en", "none": "en", "zh_und": "zh"}, "no language stage: every row is judged"


def test_languages_config_reads_old_spellings_and_rejects_an_empty_list():
    assert SemanticConfig(languages=["EN", "zh-cn", "zh-tw"]).languages == ["en", "zh"]
    with pytest.raises(ConfigError, match=r"^invalid config: semantic\.languages: .*at least one language"):
        parse_config({"semantic": {"languages": []}})
    with pytest.raises(ConfigError, match=r"^invalid config: semantic\.languages: .*'chinese' is not a language code"):
        parse_config({"semantic": {"languages": ["chinese"]}})


# Real prompts (0-based index in the file). MiniLM put each Chinese pair at cosine 0.97+ though they ask for
# different things (a book review / cogging torque; a logo for an app / the coronavirus); the English pair
# is a true paraphrase.
ZH = [25, 849, 93, 378, 100, 492]
EN = [("What are the benefits of exercising?", "Exercise strengthens the heart and lungs and lifts the mood."),
      ("Describe the benefits of exercise.", "Regular exercise improves health, sleep and mood in many ways.")]


def test_real_chinese_prompts_are_not_judged_by_english_minilm(shared_data, tmp_path):
    records = json.loads((shared_data / "multilingual" / "alpaca_zh" / "zh-data-part-00.json").read_text(encoding="utf-8"))
    pairs = [(f"{records[i]['instruction']}\n\n{records[i]['input']}".strip(), records[i]["output"]) for i in ZH] + EN
    frame = pl.DataFrame({"id": [f"r{i}" for i in range(len(pairs))], "instruction": [p[0] for p in pairs],
                          "response": [p[1] for p in pairs]}).with_columns(
        pl.lit(None, pl.String).alias(c) for c in ("drop_stage", "drop_reason", "drop_detail", "dup_of"))
    frame = language(frame, LanguageConfig(backend="fasttext")).with_columns(quality=pl.lit(0.5))
    assert frame["lang"].to_list() == ["zh"] * len(ZH) + ["en", "en"]
    vectors = embed(frame, EmbedConfig(), SentenceTransformerEmbedder(PACKAGED_MODEL, device="cpu"), tmp_path)
    m = np.stack(vectors.sort("id")["embedding"].to_numpy())
    assert min(m[0] @ m[1], m[2] @ m[3]) > 0.95, "MiniLM cannot tell these Chinese requests apart"
    judged_all = dup_of(frame, vectors, SemanticConfig(languages=None))
    assert {"r1", "r3"} <= set(judged_all), "judged as before, unrelated Chinese requests are duplicates"
    assert dup_of(frame, vectors, SemanticConfig()) == {"r7": "r6"}
