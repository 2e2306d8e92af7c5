"""Selection (quality x coverage, deita, k-center, quotas, budget) and semantic dedup, on hand-made vectors."""

import numpy as np
import polars as pl
import pytest

from pipeline.stages.embed import matrix
from pipeline.stages.select import candidates, select
from pipeline.stages.semantic import semantic_dedup
from schemas.config import SelectConfig, SemanticConfig


def unit(*values: float) -> list[float]:
    v = np.array(values, dtype=np.float32)
    return list(v / np.linalg.norm(v))


def make(rows: list[tuple]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """rows: (id, quality, category, vector[, lang]) -> (ledger frame, embeddings)."""
    frame = pl.DataFrame({
        "id": [r[0] for r in rows],
        "instruction": [f"prompt {r[0]}" for r in rows],
        "response": [f"answer {r[0]}" for r in rows],
        "n_turns": pl.Series([1] * len(rows), dtype=pl.Int32),
        "category": [r[2] for r in rows],
        "category_source": ["inferred"] * len(rows),
        "lang": [r[4] if len(r) > 4 else "en" for r in rows],
        "quality": [float(r[1]) for r in rows],
        "selection_score": [float(r[1]) for r in rows],  # what the score stage sets with scoring off
        "score_evidence": pl.Series([None] * len(rows), dtype=pl.String),
        "drop_stage": pl.Series([None] * len(rows), dtype=pl.String),
        "drop_reason": pl.Series([None] * len(rows), dtype=pl.String),
        "drop_detail": pl.Series([None] * len(rows), dtype=pl.String),
        "dup_of": pl.Series([None] * len(rows), dtype=pl.String),
    })
    dim = len(rows[0][3])
    emb = pl.DataFrame({"id": frame["id"], "embedding": pl.Series([r[3] for r in rows], dtype=pl.Array(pl.Float32, dim))})
    return frame, emb


def cfg(**kw) -> SelectConfig:
    base = dict(method="deita", budget=3, max_similarity=0.9, quality_floor=0.5, quality_step=None, pool_factor=None, category_quota=None)
    return SelectConfig(**(base | kw))


def by_id(frame: pl.DataFrame) -> dict[str, dict]:
    return {r["id"]: r for r in frame.iter_rows(named=True)}


@pytest.fixture
def pool():
    return make([
        ("a", 0.95, "coding", unit(1, 0, 0, 0)),
        ("a2", 0.90, "coding", unit(1, 0.05, 0, 0)),   # near-copy of a in meaning
        ("b", 0.85, "maths", unit(0, 1, 0, 0)),
        ("c", 0.80, "open_qa", unit(0, 0, 1, 0)),
        ("d", 0.75, "open_qa", unit(0, 0, 0, 1)),
        ("low", 0.30, "open_qa", unit(1, 1, 1, 1)),
    ])


def test_deita_accepts_best_first_and_explains_every_row(pool):
    frame, emb = pool
    out = by_id(select(frame, emb, cfg()))
    assert [out[i]["selection_rank"] for i in ("a", "b", "c")] == [1, 2, 3]
    assert out["a2"]["drop_reason"] == "too_similar_to_selected" and "to selected a " in out["a2"]["drop_detail"]
    assert out["d"]["drop_reason"] == "budget_exhausted"
    assert out["low"]["drop_reason"] == "below_quality_floor"
    assert all(out[i]["drop_stage"] == "select" for i in ("a2", "d", "low"))
    assert out["b"]["selection_reason"].startswith("quality 0.85; max similarity to earlier picks 0.00; category maths")
    assert out["a"]["selected"] and not out["d"]["selected"]


def test_select_keeps_rows_and_earlier_drops(pool):
    frame, emb = pool
    frame = frame.with_columns(pl.when(pl.col("id") == "b").then(pl.lit("pii")).otherwise(pl.col("drop_reason")).alias("drop_reason"),
                               pl.when(pl.col("id") == "b").then(pl.lit("pii")).otherwise(pl.col("drop_stage")).alias("drop_stage"))
    out = select(frame, emb, cfg())
    assert out.height == frame.height and out["id"].to_list() == frame["id"].to_list()
    assert by_id(out)["b"]["drop_stage"] == "pii" and by_id(out)["d"]["selected"]


def test_category_quota_spreads_the_budget_and_relaxes_only_when_needed():
    rows = [(f"c{i}", 0.9 - i * 0.01, "coding", unit(*np.eye(8)[i])) for i in range(6)]
    rows += [("m0", 0.6, "maths", unit(*np.eye(8)[6])), ("m1", 0.55, "maths", unit(*np.eye(8)[7]))]
    frame, emb = make(rows)
    out = by_id(select(frame, emb, cfg(budget=4, category_quota={"*": 0.5})))
    assert sorted(i for i, r in out.items() if r["selected"]) == ["c0", "c1", "m0", "m1"]
    assert out["c2"]["drop_reason"] == "quota_full" and "coding already has its quota of 2" in out["c2"]["drop_detail"]
    assert "coding 2/2" in out["c1"]["selection_reason"]
    only_coding = make(rows[:6])
    soft = by_id(select(*only_coding, cfg(budget=4, category_quota={"*": 0.5})))
    assert sum(r["selected"] for r in soft.values()) == 4 and "over quota" in soft["c2"]["selection_reason"]
    strict = by_id(select(*only_coding, cfg(budget=4, category_quota={"*": 0.5}, strict_quota=True)))
    assert sum(r["selected"] for r in strict.values()) == 2 and strict["c2"]["drop_reason"] == "quota_full"


def test_language_quota():
    rows = [(f"e{i}", 0.9, "open_qa", unit(*np.eye(6)[i]), "en") for i in range(4)]
    rows += [(f"z{i}", 0.6, "open_qa", unit(*np.eye(6)[4 + i]), "zh") for i in range(2)]
    out = select(*make(rows), cfg(budget=4, language_quota={"en": 0.5}, strict_quota=True))
    assert out.filter(pl.col("selected"))["lang"].value_counts().sort("lang").rows() == [("en", 2), ("zh", 2)]


def test_kcenter_picks_the_farthest_points_first():
    cluster = [(f"k{i}", 0.9 - i * 0.01, "open_qa", unit(1, 0.01 * i, 0)) for i in range(5)]
    frame, emb = make(cluster + [("far1", 0.6, "open_qa", unit(0, 1, 0)), ("far2", 0.55, "open_qa", unit(0, 0, 1))])
    out = by_id(select(frame, emb, cfg(method="kcenter")))
    assert {i for i, r in out.items() if r["selected"]} == {"k0", "far1", "far2"}
    assert out["k0"]["selection_rank"] == 1 and "k-center pick" in out["far2"]["selection_reason"]
    assert out["k1"]["drop_reason"] == "budget_exhausted" and "most similar pick k0 at 1.00" in out["k1"]["drop_detail"]


def test_same_seed_same_result_and_seed_breaks_ties():
    rows = [(f"t{i:02d}", 0.9, "open_qa", unit(*np.eye(20)[i])) for i in range(20)]
    frame, emb = make(rows)
    first = select(frame, emb, cfg(budget=5, seed=1))
    assert first.equals(select(frame, emb, cfg(budget=5, seed=1)))
    other = select(frame, emb, cfg(budget=5, seed=2))
    assert set(first.filter("selected")["id"]) != set(other.filter("selected")["id"])


def test_quality_step_ties_nearby_scores():
    rows = [(f"q{i}", 0.99 - i * 0.005, "open_qa", unit(*np.eye(10)[i])) for i in range(10)]
    frame, emb = make(rows)
    exact = select(frame, emb, cfg(budget=3))
    stepped = select(frame, emb, cfg(budget=3, quality_step=0.1))
    assert exact.filter("selected")["id"].sort().to_list() == ["q0", "q1", "q2"]
    assert stepped.filter("selected")["id"].sort().to_list() != ["q0", "q1", "q2"]


def test_no_budget_keeps_every_survivor_without_embeddings(pool):
    frame, _ = pool
    out = select(frame, None, cfg(budget=None))
    assert out.filter("selected").height == 5 and by_id(out)["low"]["drop_reason"] == "below_quality_floor"


def test_candidate_pool_limits_what_is_embedded_and_examined():
    rows = [(f"p{i}", 0.9 - i * 0.01, "open_qa", unit(*np.eye(12)[i])) for i in range(12)]
    frame, emb = make(rows)
    config = cfg(budget=2, pool_factor=2.0)
    pool_ids = candidates(frame, config)["id"].to_list()
    assert pool_ids == ["p0", "p1", "p2", "p3"]
    out = by_id(select(frame, emb.filter(pl.col("id").is_in(pool_ids)), config))
    assert out["p3"]["drop_detail"].startswith("budget of 2 filled before its turn; most similar pick p")
    assert out["p9"]["drop_detail"].startswith("not examined: outside the candidate pool")


def test_candidate_pool_skips_rows_a_full_quota_would_refuse():
    rows = [(f"o{i}", 0.9, "open_qa", unit(*np.eye(12)[i])) for i in range(10)]
    rows += [("m0", 0.6, "maths", unit(*np.eye(12)[10])), ("m1", 0.6, "maths", unit(*np.eye(12)[11]))]
    pool = candidates(make(rows)[0], cfg(budget=2, pool_factor=2.0, category_quota={"*": 0.5}))
    assert pool["category"].to_list() == ["open_qa", "open_qa", "maths", "maths"]


def test_prefer_longer_lets_the_longer_answers_of_a_quality_step_into_the_pool():
    rows = [(f"r{i}", 0.91 + i * 0.001, "open_qa", unit(*np.eye(12)[i])) for i in range(12)]  # one quality step
    frame = make(rows)[0].with_columns(response_words=pl.Series([5, 300, 40, 250, 7, 9, 120, 3, 60, 80, 2, 1]))
    seeded = candidates(frame, cfg(budget=2, pool_factor=2.0, quality_step=0.1))["id"].to_list()
    longer = candidates(frame, cfg(budget=2, pool_factor=2.0, quality_step=0.1, prefer_longer=True))["id"].to_list()
    assert longer == ["r1", "r3", "r6", "r9"]
    assert seeded != longer and len(seeded) == 4  # the seeded order does not look at length


def test_missing_embeddings_for_candidates_is_a_caller_error(pool):
    frame, emb = pool
    with pytest.raises(ValueError, match="embed them first"):
        matrix(emb.filter(pl.col("id") != "a"), frame["id"])


def test_semantic_dedup_keeps_the_better_row_and_names_it():
    frame, emb = make([
        ("worse", 0.6, "open_qa", unit(1, 0.1, 0)),
        ("better", 0.9, "open_qa", unit(1, 0, 0)),
        ("other", 0.7, "open_qa", unit(0, 1, 0)),
    ])
    out = by_id(semantic_dedup(frame, emb, SemanticConfig(threshold=0.9)))
    assert out["worse"]["drop_reason"] == "semantic_duplicate" and out["worse"]["dup_of"] == "better"
    assert out["worse"]["drop_stage"] == "semantic" and "cosine similarity 0.995 to better" in out["worse"]["drop_detail"]
    assert out["better"]["drop_reason"] is None and out["other"]["drop_reason"] is None


def test_semantic_dedup_coalesces_dup_of_and_can_be_off():
    frame, emb = make([("a", 0.9, "x", unit(1, 0)), ("b", 0.8, "x", unit(1, 0.01)), ("c", 0.7, "x", unit(1, 0.02))])
    frame = frame.with_columns(
        pl.when(pl.col("id") == "c").then(pl.lit("a")).alias("dup_of"),
        pl.when(pl.col("id") == "c").then(pl.lit("near_duplicate")).otherwise(pl.col("drop_reason")).alias("drop_reason"),
        pl.when(pl.col("id") == "c").then(pl.lit("dedup")).otherwise(pl.col("drop_stage")).alias("drop_stage"),
    )
    out = by_id(semantic_dedup(frame, emb, SemanticConfig(threshold=0.95)))
    assert (out["b"]["dup_of"], out["c"]["dup_of"], out["c"]["drop_reason"]) == ("a", "a", "near_duplicate")
    assert semantic_dedup(frame, emb, SemanticConfig(threshold=None)).equals(frame)


def test_deita_prefers_the_most_distinct_row_among_equal_quality():
    frame, emb = make([("x", 0.92, "open_qa", unit(1, 0, 0)), ("x2", 0.95, "open_qa", unit(1, 0.02, 0)),
                       ("y", 0.91, "open_qa", unit(0.2, 1, 0)), ("z", 0.5, "open_qa", unit(0, 0, 1))])
    out = by_id(select(frame, emb, cfg(budget=2, max_similarity=None, quality_step=0.1)))
    assert sorted(i for i, r in out.items() if r["selected"]) in (["x", "y"], ["x2", "y"])
    assert out["z"]["drop_reason"] == "budget_exhausted"


def test_a_pool_too_alike_still_fills_the_budget_and_says_so():
    frame, emb = make([("s0", 0.9, "open_qa", unit(1, 0.00, 0)), ("s1", 0.8, "open_qa", unit(1, 0.05, 0)),
                       ("s2", 0.7, "open_qa", unit(1, 0.30, 0))])
    out = by_id(select(frame, emb, cfg(budget=2)))
    assert [out[i]["selected"] for i in ("s0", "s1", "s2")] == [True, True, False]
    assert out["s1"]["selection_reason"].endswith("(over the similarity limit: the pool ran out of rows below it)")
    assert out["s2"]["drop_reason"] == "too_similar_to_selected" and "to selected s0" in out["s2"]["drop_detail"]


def one_category(n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """n rows of one category, two near-copies of each direction, so quota and similarity both bind."""
    return make([(f"r{i:02d}", 0.9 - i / 100, "coding", unit(1, (i // 2) * 0.3, 0, 0)) for i in range(n)])


def test_a_dominant_category_still_fills_the_budget_unless_quotas_are_strict():
    frame, emb = one_category(12)
    loose = cfg(budget=10, category_quota={"*": 0.1}, pool_factor=2.0)
    pool = candidates(frame, loose)
    assert pool.height == 12, "over-quota rows top up the pool when quotas are not strict"
    out = by_id(select(frame, emb, loose))
    assert sum(r["selected"] for r in out.values()) == 10
    assert all("over quota" in r["selection_reason"] for r in out.values() if r["selected"] and r["selection_rank"] > 1)

    strict = cfg(budget=10, category_quota={"*": 0.1}, pool_factor=2.0, strict_quota=True)
    pool = candidates(frame, strict)
    assert pool.height == 2
    out = by_id(select(frame, emb.filter(pl.col("id").is_in(pool["id"].implode())), strict))
    assert sum(r["selected"] for r in out.values()) == 1
    assert {r["drop_reason"] for r in out.values() if not r["selected"]} == {"quota_full", "budget_exhausted"}


def test_rows_refused_for_quota_and_then_similarity_get_their_place_in_the_last_pass():
    frame, emb = one_category(6)
    out = by_id(select(frame, emb, cfg(budget=10, category_quota={"*": 0.1}, max_similarity=0.6)))
    assert sum(r["selected"] for r in out.values()) == 6


def qc(**kw) -> SelectConfig:
    return cfg(method="quality_coverage", quality_weight=0.5, **kw)


def clusters() -> list[tuple]:
    """Three tight clusters (sizes 4, 3, 2) on orthogonal axes, qualities falling within each."""
    rows = []
    for axis, size in enumerate((4, 3, 2)):
        for k in range(size):
            v = np.zeros(6)
            v[axis], v[3 + axis] = 1.0, 0.05 * k
            rows.append((f"c{axis}{k}", 0.9 - 0.05 * k, "open_qa", unit(*v)))
    return rows


def test_quality_coverage_takes_one_row_per_cluster_and_the_best_of_each():
    out = by_id(select(*make(clusters()), qc(budget=3)))
    assert {i for i, r in out.items() if r["selected"]} == {"c00", "c10", "c20"}
    assert out["c00"]["selection_rank"] == 1  # the biggest cluster covers the most
    assert "coverage gain" in out["c10"]["selection_reason"] and out["c01"]["drop_reason"] == "budget_exhausted"
    again = select(*make(clusters()), qc(budget=3))
    assert again.equals(select(*make(clusters()), qc(budget=3)))


def test_quality_weight_one_is_best_score_first_and_zero_is_pure_coverage():
    rows = [(i, (0.95 if i.startswith("c0") else 0.5) - 0.01 * int(i[2]), c, v) for i, _, c, v in clusters()]  # cluster 0 best
    best = select(*make(rows), qc(budget=3).model_copy(update={"quality_weight": 1.0}))
    assert best.filter("selected").sort("selection_rank")["id"].to_list() == ["c00", "c01", "c02"]
    pure = select(*make(rows), qc(budget=3).model_copy(update={"quality_weight": 0.0}))
    assert sorted(i[1] for i in pure.filter("selected")["id"]) == ["0", "1", "2"]  # one per cluster


def test_rows_of_another_language_or_turn_class_are_not_covered_by_a_pick():
    v = unit(1, 0, 0)
    rows = [("en", 0.9, "open_qa", v, "en"), ("en2", 0.85, "open_qa", v, "en"), ("zh", 0.5, "open_qa", v, "zh")]
    frame, emb = make(rows)
    assert set(select(frame, emb, qc(budget=2)).filter("selected")["id"]) == {"en", "zh"}
    chat = frame.with_columns(pl.when(pl.col("id") == "en2").then(2).otherwise(1).cast(pl.Int32).alias("n_turns"),
                              pl.lit("en").alias("lang"))
    assert set(select(chat, emb, qc(budget=2)).filter("selected")["id"]) == {"en", "en2"}


def test_quality_coverage_honours_quotas_and_relaxes_them_only_to_fill_the_budget():
    rows = [(f"c{i}", 0.9 - i * 0.01, "coding", unit(*np.eye(8)[i])) for i in range(6)]
    rows += [("m0", 0.6, "maths", unit(*np.eye(8)[6]))]
    out = by_id(select(*make(rows), qc(budget=4, category_quota={"*": 0.5})))
    chosen = sorted(i for i, r in out.items() if r["selected"])
    assert len(chosen) == 4 and "m0" in chosen and sum(i.startswith("c") for i in chosen) == 3
    over = [r for i, r in out.items() if r["selected"] and "over quota" in r["selection_reason"]]
    assert len(over) == 1
    strict = by_id(select(*make(rows), qc(budget=4, category_quota={"*": 0.5}, strict_quota=True)))
    assert sum(r["selected"] for r in strict.values()) == 3
    assert sum(r["drop_reason"] == "quota_full" for r in strict.values()) == 4
