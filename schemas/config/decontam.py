"""Decontamination against evaluation sets."""

from pydantic import Field

from schemas.config.base import Section


class DecontamConfig(Section):
    """N-gram overlap between training prompts and evaluation prompts."""

    eval_sets: dict[str, str] = Field(
        default_factory=dict,
        description="Benchmark name -> path of its prompts file (JSON/JSONL/Parquet/CSV records with `turns`, "
        "`Instruction`, `instruction` (+`input` or `instances`), `prompt` or `question`); relative paths are read "
        "from the working directory. The benchmark listed first wins a tie.",
    )
    ngram: int = Field(5, ge=1, description="Word n-gram size; an eval prompt shorter than this is one n-gram of its own length.")
    min_prompt_words: int = Field(4, ge=1, description="Eval prompts (or turns) with fewer words are too generic to match and are skipped.")
    threshold: float | None = Field(
        0.7, gt=0, le=1,
        description="A training instruction holding at least this share of an eval prompt's distinct n-grams is "
        "`contaminated`; None only records the overlap.",
    )
