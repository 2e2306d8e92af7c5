"""The dedup stage: exact and near duplicates, keepers by quality, earlier runs, real data."""

import json
import random
from collections import Counter

import polars as pl
import pytest

from pipeline.dedup.minhash import shingles
from pipeline.io import rows_by_id
from pipeline.stages.dedup import COLUMNS, INDEX_FILE, build_index, dedup, load_previous
from pipeline.stages.heuristics import chars
from pipeline.stages.ingest import ingest
from pipeline.stages.minhash import COLUMNS as KEY_COLUMNS
from pipeline.stages.minhash import keyed
from schemas.config import ConfigError, DedupConfig, IngestConfig, parse_config
from schemas.ledger import DropReason
from tests.conftest import ROOT

BASE = ("Write a short paragraph explaining why the sky looks blue during the day and red at sunset.",
        "Sunlight is scattered by the molecules of the air, and blue light is scattered far more than red light. "
        "At sunset the light crosses much more air, so most of the blue is scattered away before it reaches us.")
EDITED = (BASE[0].replace("short", "brief"), BASE[1].replace("far more", "much more").replace("reaches us", "reaches our eyes"))
OLD_RULE = DedupConfig(response_threshold=None, instruction_numbers=None, response_numbers=None, input_threshold=None)  # before issue 15
OTHER = ("List three uses of baking soda in the kitchen.", "It leavens dough, it cleans pans, and it removes smells from the fridge.")


def make(rows: list[tuple[str, str]], quality: list[float] | None = None, prefix: str = "r") -> pl.DataFrame:
    """A minimal ledger: ids r0, r1, ... all alive."""
    none = pl.Series([None] * len(rows), dtype=pl.String)
    frame = pl.DataFrame({"id": [f"{prefix}{k}" for k in range(len(rows))], "instruction": [r[0] for r in rows],
                          "response": [r[1] for r in rows], "drop_stage": none, "drop_reason": none, "drop_detail": none})
    return frame.with_columns(quality=pl.Series(quality or [None] * len(rows), dtype=pl.Float64))


def verdict(frame: pl.DataFrame) -> dict[str, tuple]:
    return {r["id"]: (r["drop_reason"], r["dup_of"], r["dedup_cluster"]) for r in frame.iter_rows(named=True)}


def jaccard(a: str, b: str) -> float:
    fold = lambda t: " ".join("".join(c if c.isalnum() else " " for c in t.lower()).split())  # noqa: E731
    x, y = set(shingles(fold(a), 5)), set(shingles(fold(b), 5))
    return len(x & y) / len(x | y)


def test_exact_duplicates_fold_case_spacing_and_punctuation_and_keep_the_best():
    rows = [("Name a dwarf planet.", "Pluto is one."), ("name a  DWARF planet", "Pluto, is one!"), OTHER]
    out = dedup(make(rows, quality=[0.2, 0.9, 0.5]), DedupConfig())
    assert verdict(out) == {"r0": ("exact_duplicate", "r1", "r1"), "r1": (None, None, "r1"), "r2": (None, None, "r2")}
    dropped = out.row(0, named=True)
    assert dropped["drop_stage"] == "dedup" and dropped["dup_similarity"] == 1.0 and "r1" in dropped["drop_detail"]


def test_without_quality_the_longest_response_is_kept():
    out = dedup(make([("Explain gravity.", "Gravity pulls."), ("explain gravity", "Gravity pulls!!!")]), DedupConfig())
    assert verdict(out)["r0"] == ("exact_duplicate", "r1", "r1")


def test_near_duplicates_are_dropped_with_their_similarity():
    assert 0.5 <= jaccard(" ".join(BASE), " ".join(EDITED)) < 1
    out = dedup(make([EDITED, BASE, OTHER], quality=[0.5, 0.8, 0.5]), DedupConfig())
    assert verdict(out) == {"r0": ("near_duplicate", "r1", "r1"), "r1": (None, None, "r1"), "r2": (None, None, "r2")}
    similarity = out["dup_similarity"][0]
    assert similarity == pytest.approx(jaccard(" ".join(BASE), " ".join(EDITED)), abs=0.01)
    assert f"{similarity:.2f}"[:3] in out["drop_detail"][0]


def test_rows_dropped_earlier_are_neither_judged_nor_keepers():
    frame = make([BASE, BASE, OTHER], quality=[0.99, 0.1, 0.5]).with_columns(
        drop_stage=pl.when(pl.col("id") == "r0").then(pl.lit("heuristics")),
        drop_reason=pl.when(pl.col("id") == "r0").then(pl.lit("refusal")))
    out = dedup(frame, DedupConfig())
    assert verdict(out) == {"r0": ("refusal", None, None), "r1": (None, None, "r1"), "r2": (None, None, "r2")}
    assert out["drop_stage"][0] == "heuristics"


def test_columns_are_documented_and_typed():
    out = dedup(make([BASE, EDITED, OTHER]), DedupConfig())
    assert {c: out.schema[c] for c in COLUMNS} == {c: dtype for c, (dtype, _) in COLUMNS.items()}
    assert out.height == 3 and out.columns[:3] == ["id", "instruction", "response"]


def test_same_input_any_order_same_verdicts():
    rng = random.Random(3)
    rows = [BASE, EDITED, OTHER, BASE, (OTHER[0].upper(), OTHER[1])] + [(f"Question {k} about topic {k * 7}", f"Answer {k}") for k in range(30)]
    frame = make(rows, quality=[rng.random() for _ in rows])
    first = dedup(frame, DedupConfig())
    assert first.equals(dedup(frame, DedupConfig()))
    shuffled = dedup(frame.sample(fraction=1.0, shuffle=True, seed=1), DedupConfig())
    assert verdict(shuffled) == verdict(first)


def test_switches_turn_rules_off():
    rows = [BASE, BASE, EDITED]
    assert verdict(dedup(make(rows), DedupConfig(threshold=None)))["r2"][0] is None
    no_exact = dedup(make(rows, quality=[0.9, 0.1, 0.1]), DedupConfig(exact=False))
    assert verdict(no_exact)["r1"] == ("near_duplicate", "r0", "r0") and no_exact["dup_similarity"][1] == 1.0


def test_both_fields_must_match_when_fields_is_both():
    """A shared template with another input and answer joins into a near-copy; compared field by field it is not."""
    template = ("Calculate the perimeter of a square whose side is 10 centimetres long, and show the working step by step.",
                "The perimeter of a square is four times its side, so the perimeter is 4 x 10 = 40 centimetres.")
    other = (template[0].replace("10", "9"), "Four sides of 9 each: the perimeter is 36 centimetres in total.")
    rows = [template, other, BASE, EDITED]
    assert jaccard(" ".join(template), " ".join(other)) >= 0.5 and jaccard(template[1], other[1]) < 0.5
    joined = verdict(dedup(make(rows, quality=[0.9, 0.1, 0.9, 0.1]), OLD_RULE))
    both = verdict(dedup(make(rows, quality=[0.9, 0.1, 0.9, 0.1]), OLD_RULE.model_copy(update={"fields": "both"})))
    assert joined["r1"][:2] == ("near_duplicate", "r0") and both["r1"] == (None, None, "r1")
    assert both["r3"] == ("near_duplicate", "r2", "r2")


def test_exact_duplicates_under_both_need_both_fields_equal():
    rows = [("Name a colour", "Red is one"), ("Name a colour red", "is one"), ("name a COLOUR", "Red, is one!")]
    out = verdict(dedup(make(rows, quality=[0.9, 0.5, 0.1]), DedupConfig(fields="both", threshold=None)))
    assert out == {"r0": (None, None, "r0"), "r1": (None, None, "r1"), "r2": ("exact_duplicate", "r0", "r0")}


def test_bands_must_divide_permutations():
    with pytest.raises(ConfigError, match="bands"):
        parse_config({"dedup": {"num_perm": 128, "bands": 30}})


def _first_run(tmp_path, cfg: DedupConfig) -> pl.DataFrame:
    """Run 1 curates BASE and OTHER (the third row is dropped by another stage); its index is written."""
    run1 = dedup(make([BASE, OTHER, ("A record that was rejected", "by heuristics")], prefix="old").with_columns(
        drop_reason=pl.when(pl.col("id") == "old2").then(pl.lit("refusal"))), cfg)
    (tmp_path / "run1").mkdir()
    build_index(run1, cfg).write_parquet(tmp_path / "run1" / INDEX_FILE)
    return run1


@pytest.mark.parametrize("index_cfg", [DedupConfig(), DedupConfig(num_perm=64, bands=16, fields="response")])
def test_records_curated_by_an_earlier_run_are_not_admitted_again(tmp_path, index_cfg):
    _first_run(tmp_path, index_cfg)
    previous = load_previous([str(tmp_path / "run1")])
    assert previous.height == 2
    new = make([EDITED, (OTHER[0].lower(), OTHER[1]), ("A record that was rejected", "by heuristics"), ("Brand new", "content here")])
    out = dedup(new, DedupConfig(), previous)
    seen = str(DropReason.SEEN_IN_EARLIER_RUN)
    assert verdict(out) == {"r0": (seen, "old0", "old0"), "r1": (seen, "old1", "old1"),
                            "r2": (None, None, "r2"), "r3": (None, None, "r3")}
    assert out["dup_similarity"][1] == 1.0 and 0.5 <= out["dup_similarity"][0] < 1


def test_the_very_record_an_earlier_run_curated_is_seen(tmp_path):
    run1 = _first_run(tmp_path, DedupConfig())
    again = run1.head(2).select("id", "instruction", "response", "drop_stage", "drop_reason", "drop_detail", "quality")
    out = dedup(again, DedupConfig(), load_previous([str(tmp_path / "run1")]))
    assert out["drop_reason"].to_list() == [str(DropReason.SEEN_IN_EARLIER_RUN)] * 2
    assert out["dup_of"].to_list() == ["old0", "old1"]


def test_earlier_runs_with_other_params_or_nothing_curated_are_re_signed(tmp_path):
    """An empty index, and indexes of 64 and 128 permutations mixed, never reuse a signature of the wrong width."""
    empty = dedup(make([BASE], prefix="gone").with_columns(drop_reason=pl.lit("refusal")), DedupConfig(num_perm=64, bands=16))
    (tmp_path / "empty").mkdir()
    build_index(empty, DedupConfig(num_perm=64, bands=16)).write_parquet(tmp_path / "empty" / INDEX_FILE)
    out = dedup(make([BASE, OTHER]), DedupConfig(), load_previous([str(tmp_path / "empty")]))
    assert out["drop_reason"].to_list() == [None, None]
    _first_run(tmp_path, DedupConfig())
    (tmp_path / "small").mkdir()
    build_index(make([("Something else entirely", "with its own answer")], prefix="s"),
                DedupConfig(num_perm=64, bands=16)).write_parquet(tmp_path / "small" / INDEX_FILE)
    mixed = load_previous([str(tmp_path / "run1"), str(tmp_path / "small")])
    out = dedup(make([EDITED, ("Brand new", "content here")]), DedupConfig(), mixed)
    assert out["drop_reason"].to_list() == [str(DropReason.SEEN_IN_EARLIER_RUN), None]


def test_an_index_of_the_first_version_is_re_signed(tmp_path):
    """v1 indexes held one `key`/`signature` of the joined text; their rows are folded and signed again."""
    (tmp_path / "v1").mkdir()
    pl.DataFrame({"id": ["old0"], "instruction": [BASE[0]], "response": [BASE[1]], "key": ["whatever"],
                  "signature": pl.Series([[1] * 128], dtype=pl.Array(pl.UInt32, 128)), "params": ["v1|both|char5|128|1"]},
                 ).write_parquet(tmp_path / "v1" / INDEX_FILE)
    _first_run(tmp_path, DedupConfig(fields="both"))
    previous = load_previous([str(tmp_path / "v1"), str(tmp_path / "run1")])
    for cfg in (DedupConfig(), DedupConfig(fields="both")):
        out = dedup(make([EDITED, ("Brand new", "content here")]), cfg, previous)
        assert out["drop_reason"].to_list() == [str(DropReason.SEEN_IN_EARLIER_RUN), None]


def test_load_previous_needs_an_index(tmp_path):
    assert load_previous([]) is None
    with pytest.raises(FileNotFoundError, match=INDEX_FILE):
        load_previous([str(tmp_path)])


def _neardup_frame(shared_data) -> pl.DataFrame:
    """The README compares the `instruction` key alone (without `input`), so the frame does too."""
    records = json.loads((shared_data / "neardup" / "instruction-examples.json").read_text())
    return make([(r["instruction"], r["output"]) for r in records])


def test_labelled_pairs_of_the_neardup_readme_are_found(shared_data):
    frame = _neardup_frame(shared_data)
    text = dict(zip(frame["id"], frame["instruction"]))
    ids = {v: k for k, v in text.items()}
    instructions = dedup(frame, OLD_RULE.model_copy(update={"fields": "instruction"}))
    cluster = dict(zip(instructions["id"], instructions["dedup_cluster"]))
    pairs = [("Edit the following sentence to make it more formal.", "Edit the sentence to make it more formal."),
             ("Change the sentences from active voice to passive voice.", "Change the sentence from passive to active voice.")]
    for a, b in pairs:
        assert cluster[ids[a]] == cluster[ids[b]], (a, b)
    dwarf = [k for k, v in text.items() if v == "Name a dwarf planet in our solar system."]
    assert len(dwarf) == 2 and cluster[dwarf[0]] == cluster[dwarf[1]]
    responses = dedup(frame, OLD_RULE.model_copy(update={"fields": "response"}))
    pluto = responses.filter(pl.col("response") == "One dwarf planet in our solar system is Pluto.")
    assert pluto["drop_reason"].to_list().count("exact_duplicate") == 1


def test_alpaca_5000_mixed_into_52k_gives_exactly_5000_exact_drops(shared_data):
    alpaca = shared_data / "alpaca"
    ledger, _ = ingest([alpaca / "alpaca_data.json", alpaca / "alpaca_5000.json"], IngestConfig())
    out = dedup(ledger.with_columns(quality=pl.lit(None, pl.Float64)), DedupConfig())  # no quality: keepers by length
    exact = out.filter(pl.col("drop_reason") == "exact_duplicate")
    assert exact.height == 5000
    keepers = out.select("id", keeper_hash="content_hash")
    assert exact.join(keepers, left_on="dup_of", right_on="id", maintain_order="left")["keeper_hash"].equals(exact["content_hash"], check_names=False)


def test_planted_edits_in_real_data_are_found(shared_data):
    records = json.loads((shared_data / "alpaca" / "alpaca_data.json").read_text())[:3000]
    base = make([(f"{r['instruction']}\n\n{r['input']}".strip(), r["output"]) for r in records])
    rng = random.Random(0)

    def edit(text: str) -> str:
        words = text.split(" ")
        for k in rng.sample(range(len(words)), max(1, len(words) // 15)):
            words[k] = rng.choice(["very", "quite", "the", "small", "new"])
        return " ".join(words)

    picks = rng.sample(range(base.height), 100)
    copies = base[picks].with_columns(
        id=pl.format("copy-{}", pl.int_range(100)),
        instruction=pl.col("instruction").map_elements(edit, return_dtype=pl.String),
        response=pl.col("response").map_elements(edit, return_dtype=pl.String))
    out = dedup(pl.concat([base, copies]), DedupConfig())
    cluster = dict(zip(out["id"], out["dedup_cluster"]))
    found = sum(cluster[a] == cluster[b] for a, b in zip(base["id"].gather(picks), copies["id"]))
    assert found >= 90  # 92 measured: a one-word answer edited is another answer, which the response check refuses
    assert out.filter(pl.col("drop_reason") == "near_duplicate").height >= 90


def test_dedup_decides_on_the_minhash_columns_made_per_shard_and_reads_only_the_paired_texts(shared_data):
    """The whole-set step gets (id, quality, response length, key, buckets); texts are read by id, of candidates only."""
    records = json.loads((shared_data / "alpaca" / "alpaca_data.json").read_text())[:3000]
    rows = [(f"{r['instruction']}\n\n{r['input']}".strip(), r["output"]) for r in records]
    rng = random.Random(1)
    frame = make(rows + [(i + " Please.", r.replace(" the ", " a ", 1)) for i, r in rng.sample(rows, 60)] + rng.sample(rows, 40),
                 quality=[rng.random() for _ in range(3100)])
    cfg = DedupConfig()
    shards = pl.concat([keyed(frame.slice(lo, 1000), cfg) for lo in range(0, frame.height, 1000)])
    assert shards.equals(keyed(frame, cfg))  # per row: shard by shard is the same as whole
    asked: list[str] = []

    def texts(ids: pl.Series) -> pl.DataFrame:
        asked.extend(ids.to_list())
        return rows_by_id(frame, ids, ["instruction", "response"])

    compact = shards.select("id", "drop_stage", "drop_reason", "drop_detail", "quality", *KEY_COLUMNS, response_chars=chars("response"))
    out = dedup(compact, cfg, texts=texts)
    whole = dedup(frame, cfg)
    assert out.select("id", *COLUMNS, "drop_reason", "drop_detail").equals(whole.select("id", *COLUMNS, "drop_reason", "drop_detail"))
    drops = dict(whole["drop_reason"].value_counts().rows())
    assert drops["exact_duplicate"] == 40 and drops["near_duplicate"] >= 60  # the planted ones, and a few of Alpaca's own
    # read to be signed, then again (verified pairs only) for the checks and for the detail of a drop
    assert 100 <= len(set(asked)) < 0.2 * frame.height and max(Counter(asked).values()) <= 3


JUDGED = ROOT / "tests" / "fixtures" / "dedup_alpaca_judged.json"


def _judged_pairs(shared_data) -> pl.DataFrame:
    """The hand-judged pairs of the fixture with both records' texts, taken from Alpaca by source index."""
    ledger, _ = ingest([shared_data / "alpaca" / "alpaca_data.json"], IngestConfig())
    text = ledger.select("source_index", "instruction", "response")
    pairs = pl.DataFrame(json.loads(JUDGED.read_text())["pairs"])
    return pairs.join(text, left_on="dropped", right_on="source_index").join(text, left_on="kept", right_on="source_index", suffix="_kept")


def _flagged(pairs: pl.DataFrame, cfg: DedupConfig) -> list[bool]:
    """The rule's verdict on each pair alone: is one of the two dropped for the other?"""
    return [dedup(make([(r["instruction"], r["response"]), (r["instruction_kept"], r["response_kept"])]), cfg)["dup_of"].is_not_null().any()
            for r in pairs.iter_rows(named=True)]


@pytest.mark.parametrize(("cfg", "samples", "precision", "recall"), [
    (DedupConfig(), ("old", "new", "fresh", "inputs"), 0.85, 0.87),
    (DedupConfig(input_threshold=None), ("old", "new", "fresh", "inputs"), 0.80, 0.87),
    (OLD_RULE, ("old", "new"), 0.60, 0.88),
    (OLD_RULE.model_copy(update={"fields": "both", "threshold": 0.42}), ("old", "new"), 0.40, 0.55)])
def test_judged_alpaca_pairs_keep_their_precision_and_recall(shared_data, cfg, samples, precision, recall):
    """Floors just under what was measured (tests/fixtures/dedup_alpaca_judged.json): a rule that drops more
    templates or shared-passage pairs, or finds fewer of the judged duplicates, fails."""
    pairs = _judged_pairs(shared_data)
    assert pairs.height == 263
    pairs = pairs.filter(pl.col("sample").is_in(samples))
    pairs = pairs.with_columns(flagged=pl.Series(_flagged(pairs, cfg)))
    flagged = pairs.filter("flagged")
    assert flagged["duplicate"].mean() >= precision
    assert pairs.filter("duplicate")["flagged"].mean() >= recall


def test_near_duplicates_need_alike_responses_and_agreeing_numbers():
    """A template asked of another number answers with other numbers; 'five' restated as '5' is the same request."""
    square = ("Calculate the perimeter of a square whose side is 10 centimetres long, and show the working step by step please.",
              "The perimeter of a square is four times its side: 4 x 10 = 40 centimetres.")
    other_side = (square[0].replace("10", "9"), square[1].replace("10 = 40", "9 = 36"))
    organs = ("Name five organs of the human body and say in one line what each of them does for us.",
              "Heart: pumps blood. Lungs: exchange gases. Liver: filters blood. Kidneys: make urine. Brain: thinks.")
    restated = (organs[0].replace("five", "5"), organs[1])
    passage = ("Summarise this passage about the water cycle: water evaporates from the sea, rises, cools into clouds and falls as rain.",
               "Water evaporates, forms clouds and falls again as rain.")
    other_task = (passage[0].replace("Summarise", "Write three questions about"), "Why does water rise? What makes clouds? Where does rain go?")
    rows = [square, other_side, organs, restated, passage, other_task]
    assert all(jaccard(" ".join(a), " ".join(b)) >= 0.5 for a, b in (rows[0:2], rows[2:4], rows[4:6]))
    quality = [0.9, 0.1] * 3
    out = dedup(make(rows, quality=quality), DedupConfig())
    assert [r[0] for r in verdict(out).values()] == [None, None, None, "near_duplicate", None, None]
    assert out["drop_detail"][3].startswith(f"jaccard {out['dup_similarity'][3]:.2f}"[:10]) and "(response 1.0), numbers and inputs agree with r2" in out["drop_detail"][3]
    old = verdict(dedup(make(rows, quality=quality), OLD_RULE))
    assert [old[f"r{k}"][0] for k in (1, 5)] == ["near_duplicate"] * 2
    assert verdict(dedup(make(rows, quality=quality), DedupConfig(instruction_numbers=None, response_numbers=None)))["r1"][0] == "near_duplicate"
    assert verdict(dedup(make(rows, quality=quality), DedupConfig(response_threshold=None)))["r5"][0] == "near_duplicate"


def test_a_template_applied_to_another_input_is_another_task():
    """Alike requests with one label are duplicates only when their inputs (after a blank line, or quoted) agree."""
    label = "This is a declarative sentence."
    rows = [("Classify the type of the following sentence.\n\nThe dog barked loudly at the mailman.", label),
            ('Classify the type of the following sentence: "The sun is shining."', label),
            ("Classify the type of the sentence given below.\n\nThe dog barked loudly at the mailman!", label)]
    assert all(jaccard(" ".join(rows[0]), " ".join(r)) >= 0.5 for r in rows[1:])
    out = verdict(dedup(make(rows, quality=[0.9, 0.1, 0.1]), DedupConfig()))
    assert [out[f"r{k}"][:2] for k in range(3)] == [(None, None), (None, None), ("near_duplicate", "r0")]
    assert verdict(dedup(make(rows, quality=[0.9, 0.1, 0.1]), DedupConfig(input_threshold=None)))["r1"][:2] == ("near_duplicate", "r0")


QUOTE = '"Success is not final, failure is not fatal: it is the courage to continue that counts." - Winston Churchill'
SONNET = ("Shall I compare thee to a summer's day? Thou art more lovely and more temperate: Rough winds do shake the "
          "darling buds of May, And summer's lease hath all too short a date.")


def _one_dropped(a: tuple[str, str], b: tuple[str, str], cfg: DedupConfig) -> bool:
    return dedup(make([a, b]), cfg)["dup_of"].is_not_null().any()


@pytest.mark.parametrize(("a", "b", "duplicate"), [
    # an input (a concept) the other record states nowhere: another request, however alike the answers
    (("Find a famous quote related to the given concept.\n\nPersistence", QUOTE), ("Find a quote related to success.", QUOTE), False),
    # an input the other record answers: the same request
    (("Write the Shakespearean sonnet that starts with the line below.\n\nShall I compare thee to a summer's day?", SONNET),
     ("Find a suitable example of a Shakespearean sonnet.", f"An example of a Shakespearean sonnet is Sonnet 18: {SONNET}"), True),
    # two words of an input its answer repeats, missing from the other record: another input
    (("Rewrite this sentence in the third person.\n\nI went to the store with my friends.", "She went to the store with her friends."),
     ('Rewrite this sentence in the third person: "I went to the store with my friends to buy apples"',
      "She went to the store with her friends to buy apples."), False),
    # one word of the sentence: still the same request
    (("Rewrite this sentence in the third person.\n\nI went to the store with my friends.", "She went to the store with her friends."),
     ("Rewrite this sentence in the third person.\n\nI went to the market with my friends.", "She went to the market with her friends."), True),
])
def test_an_input_must_be_stated_in_the_other_record(a, b, duplicate):
    """One-sided inputs must be stated in the other request or answer, and the input words an answer repeats
    (it depends on them) may be missing from the other record once at most; input_threshold=None turns both off."""
    assert jaccard(" ".join(a), " ".join(b)) >= 0.5 and jaccard(a[1], b[1]) >= 0.4
    assert _one_dropped(a, b, DedupConfig()) is duplicate and _one_dropped(b, a, DedupConfig()) is duplicate
    assert _one_dropped(a, b, DedupConfig(input_threshold=None))
