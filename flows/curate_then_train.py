"""The `curate_then_train` flow: curate raw files into a run dir, then fine-tune on its curated.parquet."""

from pathlib import Path

from prefect import flow

from flows.curate import curate
from flows.train import train as train_flow
from schemas.config import CurationConfig, TrainConfig


@flow(name="curate-then-train")
def curate_then_train(
    inputs: list[str],
    out: str,
    curation: CurationConfig = CurationConfig(),
    train: TrainConfig = TrainConfig(),
    model_dir: str | None = None,
) -> dict:
    """Curate INPUTS into OUT, then train on OUT/curated.parquet into `model_dir` (default OUT/model)."""
    curated = curate(inputs=inputs, out=out, config=curation)
    target = model_dir or str(Path(out) / "model")
    trained = train_flow(curated=curated["outputs"]["curated.parquet"], out=target, config=train)
    return {"curate": curated, "train": trained}
