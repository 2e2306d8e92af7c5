"""The `train` flow: fine-tune a model on a curated.parquet with TRL's SFTTrainer (pipeline.train.sft)."""

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE

from schemas.config import TrainConfig


def _worth_retrying(task, task_run, state) -> bool:
    """Retry crashes and interruptions (the retry resumes); bad input fails the same way twice."""
    from pipeline.train.setup import TrainError

    return not isinstance(state.result(raise_on_failure=False), TrainError)


@task(name="sft", retries=1, retry_delay_seconds=5, retry_condition_fn=_worth_retrying, cache_policy=NONE)
def sft_task(curated: str, out: str, config: TrainConfig) -> dict:
    """Train into `out`; a retry resumes from the last checkpoint the failed attempt saved."""
    from pipeline.train.sft import train as run_training

    return run_training(curated, out, config, log=get_run_logger())


@flow(name="train")
def train(curated: str, out: str, config: TrainConfig = TrainConfig()) -> dict:
    """Fine-tune config.model on CURATED into OUT; returns the train manifest and publishes the losses."""
    manifest = sft_task(curated, out, config)
    rows = [{"step": p["step"], "loss": p["loss"], "kind": "train (logged step)"} for p in manifest["loss_curve"]]
    rows.append({"step": manifest["steps"], "loss": manifest["train_loss"], "kind": "train (run mean)"})
    if manifest["eval_loss"] is not None:
        rows.append({"step": manifest["steps"], "loss": manifest["eval_loss"], "kind": "eval (final)"})
    create_table_artifact(rows, key="train-losses", description=f"Training and eval losses of the model in {out}")
    return manifest
