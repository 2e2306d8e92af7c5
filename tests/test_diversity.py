"""Diversity metrics, and the curated set against a random sample of the same pool on real data."""

import json

import numpy as np
import polars as pl
import pytest

from pipeline.report.diversity import diversity_metrics, entropy_bits, mean_pairwise_distance, random_baseline, vendi_score
from pipeline.stages.category import categorize
from pipeline.stages.embed import PACKAGED_MODEL, SentenceTransformerEmbedder, embed
from pipeline.stages.ingest import ingest
from pipeline.stages.score import score
from pipeline.stages.select import candidates, select
from schemas.config import CategoryConfig, EmbedConfig, IngestConfig, ScoreConfig, SelectConfig


def test_vendi_and_mean_distance_at_their_extremes():
    same = np.tile(np.array([[0.6, 0.8]], dtype=np.float32), (5, 1))
    basis = np.eye(7, dtype=np.float32)
    assert vendi_score(same) == pytest.approx(1.0) and mean_pairwise_distance(same) == pytest.approx(0.0, abs=1e-6)
    assert vendi_score(basis) == pytest.approx(7.0) and mean_pairwise_distance(basis) == pytest.approx(1.0)
    two_clusters = np.vstack([np.tile([1.0, 0.0], (5, 1)), np.tile([0.0, 1.0], (5, 1))]).astype(np.float32)
    assert vendi_score(two_clusters) == pytest.approx(2.0)


def test_entropy_bits():
    assert entropy_bits({"a": 5, "b": 5, "c": 5, "d": 5}) == pytest.approx(2.0)
    assert entropy_bits({"a": 9}) == 0.0 and entropy_bits({}) == 0.0


def ledger(n: int) -> pl.DataFrame:
    """n rows: the first half selected, a quarter dropped by selection, a quarter dropped earlier."""
    stage = ["select"] * (n // 4) + ["dedup"] * (n // 4)
    return pl.DataFrame({
        "id": [f"r{i:03d}" for i in range(n)],
        "instruction": ["p" * (i + 1) for i in range(n)],
        "response": ["r" * (2 * i + 1) for i in range(n)],
        "category": ["a", "b"] * (n // 2),
        "lang": ["en"] * n,
        "selected": [True] * (n // 2) + [False] * (n // 2),
        "drop_stage": pl.Series([None] * (n // 2) + stage, dtype=pl.String),
    })


def test_random_baseline_is_seeded_same_size_and_from_the_pool():
    frame = ledger(40)
    sample = random_baseline(frame, seed=3)
    assert sample.height == 20 and sample.equals(random_baseline(frame, seed=3))
    assert not sample.equals(random_baseline(frame, seed=4))
    assert set(sample["id"]) <= set(frame.filter(pl.col("drop_stage").ne("dedup").fill_null(True))["id"])


def test_metrics_are_plain_json():
    frame = ledger(40)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    emb = pl.DataFrame({"id": frame["id"], "embedding": pl.Series(list(vectors), dtype=pl.Array(pl.Float32, 8))})
    metrics = diversity_metrics(frame, emb, seed=0)
    assert json.loads(json.dumps(metrics)) == metrics
    curated = metrics["curated"]
    assert curated["n"] == 20 and curated["category_counts"] == {"a": 10, "b": 10}
    assert curated["category_entropy_bits"] == 1.0 and curated["language_counts"] == {"en": 20}
    assert set(curated["prompt_chars"]) == {"mean", "p10", "p50", "p90"} and metrics["pool_size"] == 30


def test_curated_beats_random_on_vendi_and_category_entropy(shared_data, tmp_path):
    """Real Alpaca prompts, real MiniLM, the real pool, spread and quality x coverage; response length stands in
    for the heuristics' quality score and scoring is off."""
    records = json.loads((shared_data / "alpaca" / "alpaca_data.json").read_text())
    sample = tmp_path / "alpaca_sample.json"
    sample.write_text(json.dumps([records[i] for i in range(0, len(records), 65)]))
    frame, _ = ingest([sample], IngestConfig())
    frame = frame.with_columns(
        (pl.col("response").str.len_chars().log1p() / 7.0).clip(0, 1).alias("quality"), pl.lit("en").alias("lang"))
    frame = categorize(frame, CategoryConfig())
    cfg = SelectConfig(budget=80)
    model = SentenceTransformerEmbedder(PACKAGED_MODEL, device="cpu")
    emb = embed(candidates(frame, cfg), EmbedConfig(), model, tmp_path / "cache")
    ranked = score(frame.join(emb, on="id", how="left", maintain_order="left"), ScoreConfig(), cfg, None)  # a spread, by quality
    scored = emb.filter(pl.col("id").is_in(ranked.filter(pl.col("selection_score").is_not_null())["id"].implode()))
    assert scored.height == 120 < emb.height
    chosen = select(ranked.drop("embedding"), scored, cfg)
    baseline = embed(random_baseline(chosen, cfg.seed), EmbedConfig(), model, tmp_path / "cache")
    metrics = diversity_metrics(chosen, pl.concat([emb, baseline]).unique("id", keep="first"), cfg.seed)
    curated, rand = metrics["curated"], metrics["random_sample"]
    assert curated["n"] == rand["n"] == 80
    assert curated["vendi_score"] > 1.1 * rand["vendi_score"]
    assert curated["category_entropy_bits"] > rand["category_entropy_bits"]
