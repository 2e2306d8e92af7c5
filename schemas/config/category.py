"""Task categories."""

from pydantic import Field

from schemas.config.base import Section


class CategoryConfig(Section):
    """Task types: the source's category when given, else inferred."""

    infer: bool = Field(True, description="Infer a task type for records without one.")
    prototype_similarity: float | None = Field(
        0.5, gt=0, le=1,
        description="Rows no keyword rule names ('other') take the category whose centroid (mean embedding of "
        "the rows the rules named) is nearest, when that cosine similarity is at least this; needs embeddings; "
        "None: keyword rules only.",
    )
