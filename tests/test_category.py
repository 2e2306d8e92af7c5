"""Task categories: the source's label kept, keyword rules otherwise, centroids for the rest."""

import json

import numpy as np
import polars as pl

from pipeline.stages.category import CATEGORIES, categorize
from pipeline.stages.ingest import ingest
from schemas.config import CategoryConfig, IngestConfig

EXAMPLES = {
    "Write a Python function that reverses a string.": "coding",
    "Calculate the area of a circle with radius 4.": "maths",
    "Summarize the following article in two sentences.\n\nThe city council met on Monday...": "summarisation",
    "Rewrite this sentence in the passive voice.\n\nThe cat chased the mouse.": "rewriting",
    "Classify the sentiment of this review as positive or negative.\n\nGreat phone!": "classification",
    "Extract all the dates mentioned in the text.\n\nWe met on 3 May and again on 9 June.": "extraction",
    "Write a haiku about autumn leaves.": "creative_writing",
    "Brainstorm five names for a bakery.": "brainstorming",
    "Who painted the Mona Lisa?": "open_qa",
    "What is the capital mentioned here?\n\nParis is the capital of France.": "closed_qa",
    "Given a list of fruits, sort them by colour.\n\napple, banana": "rewriting",
    # Words that name code or sums only in some senses (misfiled on real Alpaca before).
    "Compile a list of strategies for studying for a test.": "brainstorming",
    "Generate a script for a 3-minute conversation.": "creative_writing",
    "Construct a 10-step program for teaching a child to tie shoes.": "creative_writing",
    "Write a script to rename every file in a folder.": "coding",
    "Divide 48 by 6.": "maths",
    "Pet the dog.": "other",
}


def frame(instructions: list[str], categories: list[str | None] | None = None, turns: list[int] | None = None) -> pl.DataFrame:
    n = len(instructions)
    cats = categories or [None] * n
    return pl.DataFrame({
        "id": [f"r{i}" for i in range(n)],
        "instruction": instructions,
        "messages": [[{"role": "user", "content": turn} for turn in (text.split("\n\n") if t > 1 else [text])]
                     for text, t in zip(instructions, turns or [1] * n)],
        "response": ["ok"] * n,
        "n_turns": pl.Series(turns or [1] * n, dtype=pl.Int32),
        "category": pl.Series(cats, dtype=pl.String),
        "category_source": pl.Series(["given" if c else None for c in cats], dtype=pl.String),
    })


def test_keyword_rules_name_each_task_type_with_evidence():
    out = categorize(frame(list(EXAMPLES)), CategoryConfig())
    assert out["category"].to_list() == list(EXAMPLES.values())
    assert set(out["category_source"]) == {"inferred"}
    assert out["category_evidence"][0] == "rule coding: 'python'"
    assert out["category_evidence"][-1] == "no rule matched"


def test_multi_turn_is_categorised_by_its_first_ask_and_given_labels_win():
    chats = ["Write a python function to sort a list\n\nNow make it faster?", "What is the capital of Peru?\n\nAnd of Chile?"]
    out = categorize(frame([*chats, "Who wrote Hamlet?", "x"], [None, None, "Information_Extraction", "general qa"], [2, 2, 1, 1]),
                     CategoryConfig())
    assert out["category"].to_list() == ["coding", "open_qa", "extraction", "open_qa"]  # not closed_qa: no input in turn 1
    assert out["category_source"].to_list() == ["inferred", "inferred", "given", "given"]


def test_inference_off_leaves_unlabelled_rows_empty():
    out = categorize(frame(["Who painted the Mona Lisa?", "x"], [None, "coding"]), CategoryConfig(infer=False))
    assert out["category"].to_list() == [None, "coding"]
    assert out["category_source"].to_list() == [None, "given"]


def test_centroids_place_rows_no_rule_names():
    rows = frame(["Write a Python script to parse logs.", "Debug this JavaScript code.", "Solve for x: 2x = 4",
                  "Compute the sum of 3 and 4.", "Pet the dog.", "Pat the cat."])
    vectors = np.array([[1, 0.1, 0], [1, -0.1, 0], [0, 1, 0.1], [0, 1, -0.1], [0.9, 0.2, 0], [0, 0, 1]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    emb = pl.DataFrame({"id": rows["id"], "embedding": pl.Series(list(vectors), dtype=pl.Array(pl.Float32, 3))})
    out = categorize(rows, CategoryConfig(prototype_similarity=0.5), emb)
    assert out["category"].to_list() == ["coding", "coding", "maths", "maths", "coding", "other"]
    assert out["category_evidence"][4].startswith("nearest category centroid, similarity 0.9")
    assert categorize(rows, CategoryConfig(prototype_similarity=None), emb)["category"][4] == "other"


def test_idempotent_and_row_order_kept():
    rows = frame(list(EXAMPLES))
    once = categorize(rows, CategoryConfig())
    assert categorize(once, CategoryConfig()).equals(once) and once["id"].equals(rows["id"])


def test_real_alpaca_leaves_few_rows_uncategorised(shared_data):
    ledger, _ = ingest([shared_data / "alpaca" / "alpaca_data.json"], IngestConfig())
    shares = categorize(ledger, CategoryConfig())["category"].value_counts(normalize=True)
    assert shares.height >= 10 and set(shares["category"]) <= set(CATEGORIES)
    assert shares.filter(pl.col("category") == "other")["proportion"][0] < 0.1


def test_dolly_file_keeps_its_categories(tmp_path):
    path = tmp_path / "dolly.jsonl"
    path.write_text(json.dumps({"instruction": "When was Rome founded?", "context": "", "response": "753 BC",
                                "category": "open_qa"}) + "\n" + json.dumps(
        {"instruction": "Summarise this.", "context": "Long text.", "response": "Short.", "category": "summarization"}) + "\n")
    ledger, _ = ingest([path], IngestConfig())
    out = categorize(ledger, CategoryConfig())
    assert out["category"].to_list() == ["open_qa", "summarisation"]
    assert out["category_evidence"].to_list() == ["given", "given"]
