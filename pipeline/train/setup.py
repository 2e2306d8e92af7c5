"""Trainer settings from a TrainConfig: SFTConfig, LoRA, the checkpoint to resume from, log forwarding, the loss."""

import hashlib
import json
import logging
from pathlib import Path

from transformers import TrainerCallback
from trl import SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from pipeline.train.data import IGNORE
from pipeline.train.model import device_info
from schemas.config.train import LoraSettings, TrainConfig

# Settings that may change between an interrupted run and its resumption without invalidating checkpoints.
RESUMABLE_CHANGES = {"max_steps", "epochs", "logging_steps", "save_steps", "keep_checkpoints"}
RUN_KEY = "winnow_run.json"
# Config attributes that rescale or cap the logits inside the model's own head: such models keep TRL's loss path.
HEAD_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


class TrainError(ValueError):
    """A training input that cannot be used: unreadable curated file, nothing to train on, foreign checkpoints."""


class LogCallback(TrainerCallback):
    """Forward the trainer's loss lines to our logger (Prefect's run logger inside a flow)."""

    def __init__(self, log: logging.Logger):
        self.log = log

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in logs.items() if "loss" in k or k in ("learning_rate", "epoch")}
            if shown:
                self.log.info("step %d/%d: %s", state.global_step, state.max_steps, shown)


def response_loss(model, inputs: dict, num_items_in_batch=None):
    """Mean -log p of every labelled next token, projecting only those positions through the LM head.

    Responses are often half the tokens or less, so the head (a fifth of SmolLM2-135M's matmuls) runs
    on those alone, once, and no logits are built for the prompt.
    """
    import torch.nn.functional as F

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kwargs = {k: v for k, v in inputs.items() if k != "labels"} | {"use_cache": False}
    hidden = base.base_model(**kwargs).last_hidden_state[:, :-1]
    labels = inputs["labels"][:, 1:].to(hidden.device)
    mask = labels != IGNORE
    logits = base.get_output_embeddings()(hidden[mask])
    total = F.cross_entropy(logits.float(), labels[mask], reduction="sum")
    return total / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)


class RowPackedCollator:
    """Packed blocks one per row, position ids restarting per example, no attention mask.

    TRL's padding-free collator joins a batch into one row (8 x 256 tokens -> 1 x 2048) for varlen
    kernels; sdpa and eager attention then mask that row block-diagonally at 2048^2 cost. Kept as rows,
    transformers masks each example to itself within its own 256-token row: the same loss, and for
    SmolLM2-135M (LoRA, 8 x 256, 2 CPU cores) 12 s a step instead of 19.
    """

    def __init__(self, pad_token_id: int):
        self.rows = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, return_position_ids=True)

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.rows(examples)
        del batch["attention_mask"]
        batch["labels"][batch["position_ids"] == 0] = IGNORE
        return batch


class ResponseLossTrainer(SFTTrainer):
    """SFTTrainer with `response_loss`: the same loss as TRL's, at a fraction of its head's cost.

    TRL's fused head scores every position (prompt included) in vocabulary tiles, adds entropy and
    top-1 for its metrics, and recomputes each tile in backward: for SmolLM2's head on 8 x 255 CPU
    positions, 60% labelled, 7.2 s a step against 1.7 s here. So no entropy or token accuracy is logged.
    TRL's path stays where ours would differ: a model wrapped for distribution, a head that rescales
    logits, label smoothing or another loss type.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.padding_free and "flash" not in self.model.config._attn_implementation:
            self.data_collator = RowPackedCollator(self.processing_class.pad_token_id)

    def _track_num_input_tokens(self, inputs):
        """Tokens seen without the padding of row-packed blocks: a row's examples end at its last non-zero position.

        Overrides the Trainer's counting hook; test_lora_with_packing_saves_an_adapter checks the exact count.
        """
        import torch

        if not isinstance(self.data_collator, RowPackedCollator) or self.args.include_num_input_tokens_seen == "no":
            return super()._track_num_input_tokens(inputs)
        ends = (inputs["position_ids"] > 0).int().flip(-1).cummax(-1).values.flip(-1)
        seen = torch.as_tensor(ends.sum(), device=self.args.device, dtype=torch.int64)
        self.state.num_input_tokens_seen += self.accelerator.gather(seen).sum().item()

    def _plain_loss(self, model) -> bool:
        unwrapped = self.accelerator.unwrap_model(model)
        config = unwrapped.config.get_text_config()
        return (unwrapped is model and self.args.loss_type == "nll"
                and self.compute_loss_func is None and self.label_smoother is None and not self.aux_loss_enabled
                and all(getattr(config, name, None) is None for name in HEAD_TRANSFORMS))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or "shift_labels" in inputs or not self._plain_loss(model):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = response_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return loss


def sft_config(cfg: TrainConfig, checkpoints: Path, precision: str, has_eval: bool):
    """SFTConfig for a run: pre-tokenized labels, explicit precision, checkpoints for resuming."""
    import torch
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(checkpoints),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=cfg.gradient_checkpointing,
        max_length=cfg.max_length,
        packing=cfg.packing,
        packing_strategy="bfd",
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.save_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        include_num_input_tokens_seen="all" if cfg.packing else "non_padding",
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=device_info()["type"] == "cpu",  # lets transformers run bf16 autocast on a CPU with AMX
        report_to="none",
        disable_tqdm=True,
    )


def lora_config(lora: LoraSettings, added_token_ids: list[int]):
    """A peft LoraConfig when LoRA is on; tokens added for ChatML get trainable embeddings."""
    if not lora.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.targets,
                      task_type="CAUSAL_LM", trainable_token_indices={"embed_tokens": added_token_ids} if added_token_ids else None)


def run_key(sha256: str, cfg: TrainConfig) -> str:
    """What checkpoints must share with a run to resume it: the data and every setting but the schedule length."""
    settings = cfg.model_dump(mode="json", exclude=RESUMABLE_CHANGES)
    return hashlib.sha256(json.dumps([sha256, settings], sort_keys=True).encode()).hexdigest()


def resume_point(checkpoints: Path, sha256: str, cfg: TrainConfig, write: bool = True) -> str | None:
    """The last checkpoint of this same run, or None; checkpoints of another run are an error, not a resume."""
    from transformers.trainer_utils import get_last_checkpoint

    key, marker = run_key(sha256, cfg), checkpoints / RUN_KEY
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last and (not marker.is_file() or json.loads(marker.read_text()).get("key") != key):
        raise TrainError(f"{checkpoints} holds checkpoints of a run with other data or settings; "
                         "use another --out or delete that folder")
    if write:
        checkpoints.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"key": key, "curated_sha256": sha256}) + "\n")
    return last
