"""Embeddings: the packaged MiniLM offline, the on-disk cache, and semantic dedup on real text."""

import numpy as np
import polars as pl
import pytest

from pipeline.stages.embed import PACKAGED_MODEL, SentenceTransformerEmbedder, embed, resolve_model
from pipeline.stages.ingest import ingest
from pipeline.stages.semantic import semantic_dedup
from schemas.config import EmbedConfig, IngestConfig, SemanticConfig


class CountingEmbedder:
    """A fake that records every text it is asked to encode."""

    def __init__(self, name: str = "fake"):
        self.name, self.seen = name, []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        rows = np.array([[len(t), t.count("a") + 1, 1.0] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def rows(prompts: list[str], responses: list[str] | None = None) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"id{i}" for i in range(len(prompts))], "instruction": prompts,
                         "response": responses or ["r"] * len(prompts)})


@pytest.fixture(scope="module")
def minilm():
    return SentenceTransformerEmbedder(PACKAGED_MODEL, device="cpu")


def test_packaged_minilm_loads_offline_from_site_packages(minilm):
    path, local = resolve_model(PACKAGED_MODEL)
    assert local and "site-packages" in path
    vectors = minilm.encode(["How does the digestive system work?", "Tell me how the digestive system works.",
                             "Write a haiku about the sea."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > 0.9 > 0.3 > vectors[0] @ vectors[2]


def test_real_semantic_dedup_finds_the_paraphrases_in_a_real_file(minilm, shared_data):
    ledger, _ = ingest([shared_data / "neardup" / "instruction-examples.json"], IngestConfig())
    ledger = ledger.with_columns(quality=pl.lit(0.0), lang=pl.lit("en"), dup_of=pl.lit(None, pl.String))  # as earlier stages leave it
    out = semantic_dedup(ledger, embed(ledger, EmbedConfig(), minilm), SemanticConfig())
    dups = out.filter(pl.col("drop_reason") == "semantic_duplicate")
    kept = dict(zip(out["id"], out["instruction"]))
    pairs = {(r["instruction"], kept[r["dup_of"]]) for r in dups.iter_rows(named=True)}
    assert ("Name a dwarf planet in our solar system.",) * 2 in pairs
    assert ('Find a rhyming word for the word "care."', 'Provide a word that rhymes with "care."') in pairs
    assert dups.height == 2


def test_cache_hit_avoids_re_encoding(tmp_path):
    fake = CountingEmbedder()
    frame = rows(["alpha", "beta", "alpha"])
    first = embed(frame, EmbedConfig(), fake, tmp_path)
    assert sorted(fake.seen) == ["alpha", "beta"]
    again = CountingEmbedder()
    second = embed(frame, EmbedConfig(), again, tmp_path)
    assert again.seen == [] and second.equals(first)
    more = CountingEmbedder()
    embed(rows(["alpha", "beta", "alpha", "gamma"]), EmbedConfig(), more, tmp_path)
    assert more.seen == ["gamma"]


def test_cache_is_keyed_by_model_and_by_the_embedded_text(tmp_path):
    frame = rows(["alpha"], ["answer"])
    embed(frame, EmbedConfig(), CountingEmbedder("one"), tmp_path)
    other_model = CountingEmbedder("two")
    embed(frame, EmbedConfig(), other_model, tmp_path)
    assert other_model.seen == ["alpha"]
    whole = CountingEmbedder("one")
    embed(frame, EmbedConfig(text="conversation"), whole, tmp_path)
    assert whole.seen == ["alpha\n\nanswer"]


def test_embed_returns_one_row_per_input_row_in_id_order():
    out = embed(rows(["b", "a", "b"]).reverse(), EmbedConfig(), CountingEmbedder())
    assert out["id"].to_list() == ["id0", "id1", "id2"]
    assert out["embedding"].dtype == pl.Array(pl.Float32, 3)
    assert embed(rows([]).head(0), EmbedConfig(), CountingEmbedder()).height == 0
