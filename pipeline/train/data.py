"""Chat templating and loss masks for SFT: labels on assistant turns only, overlong examples reported.

Each conversation is rendered once with the tokenizer's chat template (ChatML where it has none).
Assistant spans are found by rendering the prefixes before and after each assistant turn, and the
tokens whose first character lies in a span keep their id as label; every other token is -100.
"""

import os
from dataclasses import dataclass, field

import numpy as np
from jinja2.exceptions import TemplateError

IGNORE = -100
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
REPORT_LIMIT = 100


@dataclass
class Prepared:
    """Tokenized examples ready for SFTTrainer, and what was done to the ones that did not fit."""

    examples: list[dict] = field(default_factory=list)
    overlong: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def report(self) -> dict:
        """The manifest's `examples` section: counts, and the first overlong ids with their lengths."""
        return {
            "usable": len(self.examples),
            "overlong": len(self.overlong),
            "truncated": sum(o["action"] == "truncated" for o in self.overlong),
            "skipped": dict(sorted(self.skipped.items())),
            "overlong_examples": self.overlong[:REPORT_LIMIT],
            "tokens": sum(len(e["input_ids"]) for e in self.examples),
            "loss_tokens": sum(sum(t != IGNORE for t in e["labels"]) for e in self.examples),
        }


def ensure_chat_template(tokenizer) -> list[str]:
    """Give a tokenizer without a chat template the ChatML default; return the special tokens added."""
    if tokenizer.chat_template:
        return []
    missing = [t for t in CHATML_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return missing


def _common_prefix(part: str, full: str) -> int:
    """Length of the shared start of two renderings; templates that re-render history can diverge."""
    return len(part) if full.startswith(part) else len(os.path.commonprefix([part, full]))


def render(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The conversation as text, and the (start, end) character span of every assistant turn.

    An assistant turn that opens the conversation answers no prompt, so it is context, not a target.
    """
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or i == 0:
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        spans.append((_common_prefix(before, full), _common_prefix(upto, full)))
    return full, spans


def labels_for(input_ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Token ids where the token starts inside an assistant span, -100 everywhere else."""
    starts = np.array([o[0] for o in offsets], dtype=np.int64)
    inside = np.zeros(len(starts), dtype=bool)
    for a, b in spans:
        inside |= (starts >= a) & (starts < b)
    return np.where(inside, np.asarray(input_ids, dtype=np.int64), IGNORE).tolist()


def _fit(ids: list[int], labels: list[int], max_length: int, overlong: str) -> tuple[str, int]:
    """Verdict and how many labelled tokens lie past max_length (the part truncation would cut)."""
    trained = np.flatnonzero(np.asarray(labels) != IGNORE)
    cut = int((trained >= max_length).sum())
    if trained.size == 0:
        return "no_assistant_tokens", cut
    if cut == 0:
        return "ok", cut
    if overlong == "truncate" and cut < trained.size:
        return "truncated", cut
    return "dropped", cut


def _count(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def _render_all(rows: list[dict], tokenizer, out: "Prepared") -> tuple[list[dict], list[str], list]:
    """Render every row that has an assistant turn; the rest are counted as skipped."""
    kept, texts, spans = [], [], []
    for row in rows:
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        if not any(m["role"] == "assistant" for m in messages):
            _count(out.skipped, "no_assistant_turn")
            continue
        try:
            text, turn_spans = render(tokenizer, messages)
        except TemplateError:
            _count(out.skipped, "template_error")
            continue
        kept.append(row)
        texts.append(text)
        spans.append(turn_spans)
    return kept, texts, spans


def prepare(rows: list[dict], tokenizer, max_length: int, overlong: str = "drop") -> Prepared:
    """Render, tokenize and mask every row (`id`, `messages`); check each against max_length."""
    out = Prepared()
    kept, texts, spans = _render_all(rows, tokenizer, out)
    if not texts:
        return out
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    for row, ids, offsets, turn_spans in zip(kept, encoded["input_ids"], encoded["offset_mapping"], spans):
        labels = labels_for(ids, offsets, turn_spans)
        verdict, cut = _fit(ids, labels, max_length, overlong)
        if verdict == "no_assistant_tokens":
            _count(out.skipped, verdict)
            continue
        if verdict != "ok":
            out.overlong.append({"id": row.get("id"), "tokens": len(ids), "assistant_tokens_cut": cut, "action": verdict})
        if verdict == "dropped":
            continue
        out.examples.append({"id": row.get("id"), "input_ids": list(ids[:max_length]), "labels": labels[:max_length]})
    return out


def split(n: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic train/eval indices: at least one eval example when asked for, never all of them."""
    n_eval = 0 if eval_fraction <= 0 or n < 2 else min(max(1, round(n * eval_fraction)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[n_eval:].tolist()), sorted(order[:n_eval].tolist())
