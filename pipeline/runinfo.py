"""What a manifest records about the software that made it."""

from importlib import metadata

TRACKED = ("winnow", "polars", "pydantic", "prefect", "langdetect", "sentence-transformers",
           "torch", "transformers", "trl", "peft", "numpy")


def version() -> str:
    try:
        return metadata.version("winnow")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def packages(names: tuple[str, ...] = TRACKED) -> dict[str, str | None]:
    """Installed versions of the packages that shape a run's output."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
