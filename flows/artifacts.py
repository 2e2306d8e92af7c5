"""Prefect artifacts a curate run publishes: counts per stage and reason, and a summary."""

from prefect.artifacts import create_markdown_artifact, create_table_artifact


def counts_rows(manifest: dict) -> list[dict]:
    c = manifest["counts"]
    rows = [{"stage": stage, "reason": reason, "records": n} for stage, reasons in c["by_reason"].items() for reason, n in reasons.items()]
    return rows + [{"stage": "curated", "reason": "", "records": c["curated"]}]


def summary_markdown(manifest: dict) -> str:
    c = manifest["counts"]
    lines = [
        f"# winnow curate: {c['curated']:,} curated of {c['input']:,}",
        f"rejected {c['rejected']:,} · quarantined {c['quarantined']:,}",
        "",
        "| stage | seconds | alive after | resumed |",
        "|---|---:|---:|---|",
        *(f"| {s['name']} | {s['seconds']:.1f} | {s['alive']:,} | {'yes' if s['resumed'] else ''} |" for s in manifest["stages"]),
    ]
    diversity = manifest.get("diversity")
    if diversity:
        lines += ["", "## Diversity: curated vs random sample of the same size", "", "| metric | curated | random |", "|---|---:|---:|"]
        curated, random = diversity.get("curated", {}), diversity.get("random_sample", {})
        for key, value in curated.items():
            if isinstance(value, int | float):
                lines.append(f"| {key} | {value:.4g} | {random.get(key, float('nan')):.4g} |")
    lines += ["", "## Outputs", "", *(f"- `{path}`" for path in manifest["outputs"].values())]
    return "\n".join(lines)


def publish(manifest: dict) -> None:
    """Attach the counts table and summary to the current flow run."""
    create_table_artifact(counts_rows(manifest), key="curate-counts", description="Records per stage and reason")
    create_markdown_artifact(summary_markdown(manifest), key="curate-summary", description="Curate run summary")
