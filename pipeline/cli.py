"""`winnow` command line: curate, train, inspect."""

import os
import sys
from pathlib import Path
from typing import Annotated

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("CI") or not sys.stderr.isatty():
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

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


@app.command()
def curate(
    inputs: Annotated[list[str], typer.Argument(help="Files, folders or globs of raw instruction data.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML or TOML curation config.")] = None,
    budget: Annotated[int | None, typer.Option(help="Size of the curated set (overrides select.budget).")] = None,
) -> None:
    """Curate INPUTS into OUT: ledger, curated set, quarantine, manifest and report."""
    overrides = {"select.budget": budget} if budget is not None else {}
    try:
        cfg = load_config(config, **overrides)
        from pipeline.io import expand_inputs

        expand_inputs(inputs)
    except (ConfigError, InputError) as err:
        fail(str(err))
    from flows.curate import curate as curate_flow

    with console.status("curating…", spinner="dots"):
        manifest = curate_flow(inputs=list(inputs), out=str(out), config=cfg)
    console.print(counts_table(manifest))
    console.print(f"outputs in [bold]{out}[/]: curated.parquet, ledger.parquet, quarantine.parquet, manifest.json")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
