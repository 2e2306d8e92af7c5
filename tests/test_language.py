"""Language: stage logic with a fake detector, and the real seeded langdetect on MGSM (11 languages)."""

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.stages.language import COLUMNS, language, prefix
from pipeline.stages.language_detect import LangdetectDetector, detect_one, script_hint
from schemas.config import ConfigError, LanguageConfig, parse_config

MGSM = Path(__file__).resolve().parents[2] / "shared" / "data" / "multilingual" / "mgsm"
ALPACA_ZH = MGSM.parent / "alpaca_zh" / "zh-data-part-00.json"
MGSM_LANGS = ["bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh"]  # all in langdetect's profiles


class FakeDetector:
    """Names the language from a tag at the start of the text; records what it was asked."""

    def __init__(self):
        self.seen: list[str] = []

    def detect(self, texts, advance=lambda n: None):
        self.seen += list(texts)
        return [t.split(":", 1)[0] for t in texts]


def frame(pairs, dropped=()) -> pl.DataFrame:
    return pl.DataFrame({
        "id": [str(i) for i in range(len(pairs))],
        "instruction": [p[0] for p in pairs],
        "response": [p[1] for p in pairs],
        "drop_stage": ["heuristics" if i in dropped else None for i in range(len(pairs))],
        "drop_reason": ["refusal" if i in dropped else None for i in range(len(pairs))],
        "drop_detail": [None] * len(pairs),
    }, schema_overrides={"drop_stage": pl.String, "drop_reason": pl.String, "drop_detail": pl.String})


LONG = " is a sentence with more than twenty letters"
PAIRS = [("en:" + LONG, "en:" + LONG), ("fr:" + LONG, "en:" + LONG), ("short", "de:" + LONG),
         ("zh-cn:" + LONG, "zh-tw:" + LONG), ("ok", "fine"), ("es:" + LONG, "es:" + LONG)]


def test_columns_und_fallback_and_mismatch():
    detector = FakeDetector()
    out = language(frame(PAIRS, dropped={5}), LanguageConfig(), detector)
    assert out["lang"].to_list() == ["en", "fr", "de", "zh", "und", None]
    assert out["lang_response"].to_list() == ["en", "en", "de", "zh", "und", None]
    assert out["lang_mismatch"].to_list() == [False, True, False, False, False, None]
    assert out["drop_reason"].to_list() == [None] * 5 + ["refusal"]
    assert {c: out.schema[c] for c in COLUMNS} == {c: d for c, (d, _) in COLUMNS.items()}
    assert not any(t.startswith("es:") for t in detector.seen), "dropped rows are not read"
    assert "short" not in detector.seen and "ok" not in detector.seen, "short texts are und without asking"


def test_allow_list_and_mismatch_drops():
    out = language(frame(PAIRS), LanguageConfig(allow=["en", "zh"], drop_mismatch=True), FakeDetector())
    assert out["drop_reason"].to_list() == [None, "language", "language", None, None, "language"]
    assert out["drop_detail"][1] == "language fr not in the allow-list en, zh"
    strict = language(frame(PAIRS), LanguageConfig(allow=["en"], keep_undetermined=False, drop_mismatch=True), FakeDetector())
    assert strict["drop_reason"].to_list() == [None, "language", "language", "language", "language", "language"]
    mismatch = language(frame(PAIRS), LanguageConfig(drop_mismatch=True), FakeDetector())
    assert mismatch["drop_reason"].to_list() == [None, "language_mismatch", None, None, None, None]
    assert mismatch["drop_detail"][1] == "instruction in fr, response in en"


def test_disabled_adds_null_columns():
    out = language(frame(PAIRS), LanguageConfig(enabled=False), FakeDetector())
    assert out["lang"].null_count() == len(PAIRS) and out["drop_reason"].null_count() == len(PAIRS)


def test_prefix_drops_code_and_urls():
    text = pl.Series(["Voici le code ```python\nprint('hello world')\n``` et https://example.com/x le reste"])
    assert pl.select(prefix(pl.lit(text), 20)).item() == "Voici le code   et  "


def test_script_settles_chinese_that_langdetect_calls_korean():
    text = "安迪种了 90 株天竺葵和比天竺葵少 40 株的矮牵牛花。他一共种了多少株花？"
    assert script_hint(text) == "zh" and detect_one(text, 0.5).startswith("zh")
    assert script_hint("The quick brown fox") is None and detect_one("The quick brown fox jumps over the lazy dog", 0.5) == "en"


@pytest.fixture(scope="module")
def mgsm() -> pl.DataFrame:
    if not MGSM.is_dir():
        pytest.skip("../shared/data is not present")
    parts = []
    for lang in MGSM_LANGS:
        tsv = pl.read_csv(MGSM / f"mgsm_{lang}.tsv", separator="\t", has_header=False, quote_char=None, infer_schema=False)
        parts.append(pl.DataFrame({"truth": lang, "instruction": tsv[:, 0], "response": tsv[:, 1]}))
    return pl.concat(parts).with_row_index("n").select(
        pl.col("n").cast(pl.String).alias("id"), "truth", "instruction", "response",
        *(pl.lit(None, pl.String).alias(c) for c in ("drop_stage", "drop_reason", "drop_detail")))


def test_real_langdetect_on_mgsm_is_right_and_deterministic(mgsm):
    """>= 95% right in every language, and the same answers from a pool of 2 and from one process."""
    pooled = language(mgsm, LanguageConfig(workers=2))
    single = language(mgsm, LanguageConfig(), LangdetectDetector(workers=1, chunk=97))
    assert pooled["lang"].to_list() == single["lang"].to_list()
    right = pooled.group_by("truth").agg((pl.col("lang") == pl.col("truth")).mean().alias("share"))
    assert right.filter(pl.col("share") < 0.95).height == 0, right.sort("share").head(3)
    assert set(pooled["lang_response"]) == {"und"}, "answers are numbers: too short to judge"


def test_short_chinese_is_judged_by_its_script_short_english_is_not():
    """Real lines of ../shared/data's Chinese Alpaca: 10-30 Han characters are enough; 6 Han and 15 Latin letters,
    or 21 Latin letters, are not."""
    frame = pl.DataFrame({"id": ["a", "b", "c"], "instruction": ["确定在量子力学发展中产生影响的人物", "列举五大主要的食物类别。",
                                                              "Determine the outcome of 5+6"],
                          "response": ["埃尔温·薛定谔（Erwin Schrödinger）", "谷物、蔬菜、水果、蛋白质和奶制品。", "11"]}).with_columns(
        pl.lit(None, pl.String).alias(c) for c in ("drop_stage", "drop_reason", "drop_detail"))
    out = language(frame, LanguageConfig(workers=1))
    assert out["lang"].to_list() == ["zh", "zh", "und"]
    assert out["lang_response"].to_list()[:2] == ["und", "zh"]


def test_fasttext_backend_on_mgsm_is_right_and_deterministic(mgsm):
    """The fast backend: what it names is right (>= 99%) in every MGSM language, and it names >= 95% of every
    language but Swahili, where the compressed model is unsure and says `und`; same answers twice."""
    cfg = LanguageConfig(backend="fasttext")
    assert cfg.min_probability == 0.5
    out = language(mgsm, cfg)
    assert out["lang"].to_list() == language(mgsm, cfg)["lang"].to_list()
    judged = pl.col("lang") != "und"
    stats = out.group_by("truth").agg(
        judged.mean().alias("named"),
        (pl.col("lang") == pl.col("truth")).filter(judged).mean().alias("right"))
    assert stats.filter(pl.col("right") < 0.99).height == 0, stats.sort("right").head(3)
    assert stats.filter((pl.col("named") < 0.95) & (pl.col("truth") != "sw")).height == 0, stats.sort("named").head(3)


def test_one_code_per_language_whatever_the_detector_spells():
    """Region and case variants are one language; fastText's Wikipedia label 'als' (Alemannic) is ISO 639's 'gsw';
    an answer that is no code at all is 'und', not an error."""
    pairs = [(f"{code}:{LONG}", f"{code}:{LONG}") for code in ("zh-cn", "zh-tw", "zh", "ZH-Hant", "pt_BR", "als", "??")]
    out = language(frame(pairs), LanguageConfig(drop_mismatch=True), FakeDetector())
    assert out["lang"].to_list() == ["zh", "zh", "zh", "zh", "pt", "gsw", "und"]
    assert out["drop_reason"].null_count() == len(pairs), "zh-cn beside zh-tw is no mismatch"


def test_allow_list_reads_old_spellings_and_rejects_non_codes():
    assert LanguageConfig(allow=["zh-cn", "zh-TW", "en_US", "EN"]).allow == ["zh", "en"]
    out = language(frame(PAIRS), LanguageConfig(allow=["zh-cn"], keep_undetermined=False), FakeDetector())
    assert out["drop_reason"].to_list() == ["language", "language", "language", None, "language", "language"]
    assert out["drop_detail"][0] == "language en not in the allow-list zh"
    with pytest.raises(ConfigError, match=r"^invalid config: language\.allow: .*'english' is not a language code"):
        parse_config({"language": {"allow": ["english"]}})


@pytest.mark.parametrize("backend", ["langdetect", "fasttext"])
def test_chinese_alpaca_gets_one_code_from_either_backend(backend):
    """Real Chinese Alpaca rows: langdetect said zh-cn, zh-tw or (where the script overruled it) zh, fastText zh;
    now every Chinese row is 'zh' from both, and no code carries a region."""
    if not ALPACA_ZH.is_file():
        pytest.skip("../shared/data is not present")
    records = json.loads(ALPACA_ZH.read_text(encoding="utf-8"))[:400]
    rows = frame([(f"{r['instruction']}\n\n{r['input']}".strip(), r["output"]) for r in records])
    out = language(rows, LanguageConfig(backend=backend, workers=1))
    codes = pl.concat([out["lang"], out["lang_response"]])
    assert (out["lang"] == "zh").mean() >= 0.9
    assert not codes.str.contains("-").any(), codes.filter(codes.str.contains("-")).unique().to_list()
