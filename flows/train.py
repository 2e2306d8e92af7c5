"""The `train` flow: fine-tune a model on a curated.parquet with TRL's SFTTrainer (pipeline.train)."""

import os

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from schemas.config import TrainConfig

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _worth_retrying(task, task_run, state) -> bool:
    """Retry crashes and interruptions (the retry resumes); bad input fails the same way twice."""
    from pipeline.train_setup import TrainError

    return not isinstance(state.result(raise_on_failure=False), TrainError)


@task(name="sft", retries=1, retry_delay_seconds=5, retry_condition_fn=_worth_retrying, cache_policy=NONE)
def sft_task(curated: str, out: str, config: TrainConfig) -> dict:
    """Train into `out`; a retry resumes from the last checkpoint the failed attempt saved."""
    from pipeline.train import train as run_training

    return run_training(curated, out, config, log=get_run_logger())


@flow(name="train", log_prints=True)
def train(curated: str, out: str, config: TrainConfig = TrainConfig()) -> dict:
    """Fine-tune config.model on CURATED into OUT; returns the train manifest."""
    return sft_task(curated, out, config)
