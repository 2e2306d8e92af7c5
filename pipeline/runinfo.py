"""What a manifest records about the software that made it."""

import hashlib
from functools import cache
from importlib import metadata
from pathlib import Path

TRACKED = ("winnow", "polars", "pydantic", "prefect", "langdetect", "sentence-transformers",
           "torch", "transformers", "trl", "peft", "numpy")


def version() -> str:
    try:
        return metadata.version("winnow")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@cache
def code_version() -> str:
    """The version plus a hash of all of winnow's source, for the manifest: which code made this run.
    (Stage keys hash each stage's own code instead: pipeline.runner.code_key.)"""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted([*root.glob("pipeline/**/*.py"), *root.glob("schemas/**/*.py")]):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return f"{version()}+{digest.hexdigest()[:12]}"


def packages(names: tuple[str, ...] = TRACKED) -> dict[str, str | None]:
    """Installed versions of the packages that shape a run's output."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
