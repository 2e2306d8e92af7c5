"""SFT stage: fine-tune a causal LM on curated.parquet with TRL's SFTTrainer, write model and manifest.

DIR gets the model (or LoRA adapter) and tokenizer, `train_manifest.json`, and `checkpoints/`
while training; a rerun after an interruption resumes from the last checkpoint, and a rerun of a
finished run with the same data and config returns its manifest without training again.
"""

import json
import logging
import shutil
import time
from pathlib import Path

import polars as pl

from pipeline import runinfo
from pipeline.io import file_sha256, write_json
from pipeline.train.data import prepare, split
from pipeline.train.model import device_info, load, pick_precision, resolve, weights_dtype
from pipeline.train.setup import LogCallback, ResponseLossTrainer, TrainError, lora_config, resume_point, sft_config
from schemas.config.train import TrainConfig

EXTRA_PACKAGES = ("accelerate", "datasets", "tokenizers", "gguf", "safetensors")
MANIFEST = "train_manifest.json"


def read_curated(path: str | Path) -> list[dict]:
    """The `id` and `messages` of every curated row."""
    try:
        frame = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise TrainError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    if "messages" not in frame.columns:
        raise TrainError(f"{path} has no `messages` column (expected a winnow curated.parquet)")
    ids = frame["id"] if "id" in frame.columns else pl.Series("id", [str(i) for i in range(frame.height)])
    return pl.DataFrame({"id": ids.cast(pl.String), "messages": frame["messages"]}).to_dicts()


def finished(out: Path, sha256: str, cfg: TrainConfig) -> dict | None:
    """The manifest of an earlier finished run on the same data and config, if DIR holds one."""
    path = out / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    same = manifest.get("curated_sha256") == sha256 and manifest.get("config") == cfg.model_dump(mode="json")
    return manifest if same else None


def _datasets(prepared, cfg: TrainConfig):
    """Train and eval `datasets.Dataset`s of input_ids/labels, split deterministically by seed."""
    from datasets import Dataset

    rows = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in prepared.examples]
    train_idx, eval_idx = split(len(rows), cfg.eval_fraction, cfg.seed)
    train = Dataset.from_list([rows[i] for i in train_idx])
    return train, (Dataset.from_list([rows[i] for i in eval_idx]) if eval_idx else None)


def _log_preparation(log, report: dict, max_length: int) -> None:
    log.info("prepared %d examples (%d tokens, %d trained on)", report["usable"], report["tokens"], report["loss_tokens"])
    if report["overlong"]:
        ids = ", ".join(str(o["id"]) for o in report["overlong_examples"][:10])
        log.warning("%d examples have assistant tokens past max_length=%d (%d truncated, the rest dropped): %s%s",
                    report["overlong"], max_length, report["truncated"], ids, " …" if report["overlong"] > 10 else "")
    if report["skipped"]:
        log.warning("skipped examples: %s", report["skipped"])


def _tokens_before(checkpoint: str | None) -> int:
    if not checkpoint:
        return 0
    return int(json.loads(Path(checkpoint, "trainer_state.json").read_text()).get("num_input_tokens_seen", 0))


def _final_eval_loss(trainer) -> float:
    """Eval loss at the last step: the one the trainer logged there, else a fresh evaluation."""
    logged = [h for h in trainer.state.log_history if "eval_loss" in h and h["step"] == trainer.state.global_step]
    return logged[-1]["eval_loss"] if logged else trainer.evaluate()["eval_loss"]


def _outcome(trainer, result, checkpoint: str | None, has_eval: bool) -> dict:
    """Losses, steps, tokens and speed of a finished trainer.train(); tokens/s counts this session only."""
    state, seconds = trainer.state, result.metrics["train_runtime"]
    return {
        "train_loss": result.training_loss,
        "eval_loss": _final_eval_loss(trainer) if has_eval else None,
        "loss_curve": [{"step": h["step"], "loss": h["loss"]} for h in state.log_history if "loss" in h],
        "steps": state.global_step,
        "epochs": state.epoch,
        "tokens_seen": state.num_input_tokens_seen,
        "train_seconds": seconds,
        "tokens_per_second": (state.num_input_tokens_seen - _tokens_before(checkpoint)) / max(seconds, 1e-9),
        "resumed_from": checkpoint,
    }


def train(curated: str | Path, out: str | Path, cfg: TrainConfig = TrainConfig(), log: logging.Logger | None = None) -> dict:
    """Fine-tune cfg.model on the curated file into `out`; return the manifest written there."""
    log = log or logging.getLogger("winnow.train")
    wall = time.perf_counter()
    out, sha256 = Path(out), file_sha256(curated)
    if (done := finished(out, sha256, cfg)) is not None:
        log.info("%s already holds a finished run on this data and config; nothing to do", out)
        return done
    rows = read_curated(curated)
    source, precision = resolve(cfg.model), pick_precision(cfg.precision)
    dtype = weights_dtype(precision, cfg.lora.enabled)
    model, tokenizer, added = load(source, cfg.attn_implementation, dtype)
    prepared = prepare(rows, tokenizer, cfg.max_length, cfg.overlong)
    report = prepared.report()
    _log_preparation(log, report, cfg.max_length)
    if not prepared.examples:
        raise TrainError(f"no example of {curated} can be trained on ({len(rows)} rows; {report['skipped']}, {report['overlong']} overlong)")
    train_set, eval_set = _datasets(prepared, cfg)
    args = sft_config(cfg, out / "checkpoints", precision, eval_set is not None)
    checkpoint = resume_point(out / "checkpoints", sha256, cfg, write=args.process_index == 0)

    from transformers import PrinterCallback

    trainer = ResponseLossTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                         processing_class=tokenizer, peft_config=lora_config(cfg.lora, added), callbacks=[LogCallback(log)])
    trainer.remove_callback(PrinterCallback)
    log.info("training %s on %s (%s, %d train / %d eval examples)%s", source.describe(), device_info()["name"], precision,
             len(train_set), len(eval_set or []), f", resuming from {checkpoint}" if checkpoint else "")
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out))
    manifest = {
        "winnow_version": runinfo.version(),
        "config": cfg.model_dump(mode="json"),
        "curated": str(Path(curated).resolve()),
        "curated_sha256": sha256,
        "model": {"source": source.describe(), "adapter": cfg.lora.enabled, "weights_dtype": dtype,
                  "parameters": sum(p.numel() for p in trainer.model.parameters()),
                  "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)},
        "examples": report | {"train": len(train_set), "eval": len(eval_set or [])},
        **_outcome(trainer, result, checkpoint, eval_set is not None),
        "wall_seconds": time.perf_counter() - wall,
        "precision": precision,
        "device": device_info() | {"world_size": args.world_size},
        "packages": runinfo.packages(runinfo.TRACKED + EXTRA_PACKAGES),
        "outputs": {"model_dir": str(out.resolve()), "manifest": str((out / MANIFEST).resolve())},
    }
    if trainer.is_world_process_zero():
        write_json(manifest, out / MANIFEST)
        if not cfg.keep_checkpoints:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
    eval_loss = manifest["eval_loss"]
    log.info("trained %d steps, train loss %.4f%s, %.0f tokens/s; model in %s", manifest["steps"], manifest["train_loss"],
             f", eval loss {eval_loss:.4f}" if eval_loss is not None else "", manifest["tokens_per_second"], out)
    return manifest
