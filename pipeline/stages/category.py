"""Task categories: the source's own label when it has one, else keyword rules a person can read.

Rules look at the task statement (the first paragraph of the first user turn; what follows is the input)
and the first rule that matches wins, in the order of RULES. With embeddings, rows no rule names
take the category whose centroid (mean embedding of the rows the rules did name) is nearest.
"""

import numpy as np
import polars as pl

from pipeline.stage import Stage, StageName
from pipeline.stages.embed import matrix
from schemas.config.category import CategoryConfig

CATEGORIES = ("open_qa", "closed_qa", "summarisation", "extraction", "classification", "brainstorming",
              "creative_writing", "rewriting", "coding", "maths", "other")

COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "category_evidence": (pl.String, "why the category: 'given', the keyword rule and the words it matched, or the centroid similarity"),
}

_N = r"(?:\d+|two|three|four|five|six|seven|eight|nine|ten|some|several|a few)"
# (category, regex on the lower-cased task statement); first match wins.
RULES: list[tuple[str, str]] = [
    ("coding", r"\b(?:code|coding|programming|computer program|program (?:that|to|which|in)|python|javascript|java|"
               r"c\+\+|c#|sql|html|css|algorithm|script (?:that|to|which|in)|regex|regular expression|debug|compiler|"
               r"compile (?:the|this) (?:code|program)|json|bash|pseudo-?code|function that|"
               r"write a function|data structure|api)\b"),
    ("maths", r"\b(?:calculate|compute|solve for|equation|arithmetic|math(?:s|ematical)?|probability|derivative|"
              r"integral|square root|percentage|sum of|product of|area of|perimeter|volume of|average of|"
              r"multiply|divide \d+|divided by|convert \d+|algebra\w*|solve the following (?:\w+ )?(?:equation|expression))\b|"
              r"\d\s*[+*/×÷^=]\s*\d"),
    ("summarisation", r"\b(?:summar\w*|tl;?dr|main (?:idea|points?)|key points|condense|in (?:one|a) sentence)"),
    ("rewriting", r"\b(?:rewrite|re-write|paraphrase|rephrase|reword|edit|correct|proofread|translate|"
                  r"make (?:it|the \w+|this \w+) (?:more|less)|simplify|passive voice|active voice|grammar|"
                  r"change (?:the|this) \w+ (?:to|into)|convert (?:the|this) \w+ (?:to|into))\b"),
    ("classification", r"\b(?:classify|categori[sz]e|sentiment|label|determine (?:whether|if)|"
                       r"decide (?:whether|if)|identify (?:whether|if)|tell (?:whether|if)|"
                       r"which of the following|fact or opinion|true or false|spam)\b"),
    ("extraction", r"\b(?:extract|pick out|find (?:the|all) \w+ (?:in|from)|identify (?:the|all) \w+ (?:in|from)|"
                   r"list (?:the|all) \w+ (?:in|from|mentioned))\b"),
    ("creative_writing", r"\b(?:poem|story|stories|haiku|song|lyrics|limerick|tweet|slogan|tagline|essay|"
                         r"letter|dialogue|fiction|joke|rap|blog post|speech|motto|email|headline|title|caption|"
                         r"advertisement|ad|persuasive|description|paragraph|article|review|anecdote|metaphor|"
                         r"simile|analogy|riddle|scenario|character)\b"),
    ("brainstorming", rf"\b(?:brainstorm|come up with|suggest|ideas?|generate (?:a list|{_N})|list {_N}|"
                      rf"give (?:me )?{_N}|name {_N}|think of|recommend\w*|tips|(?:make|compile) a list|propose|formulate)\b"),
    ("open_qa", r"(?m)^(?:what|who|whom|whose|when|where|why|how|which|is|are|do|does|did|can|could|should|would|"
                r"explain|describe|define|tell me|name|give|list|identify|find|compare|contrast|analy[sz]e|"
                r"evaluate|discuss|predict|outline|provide|state|determine|select|choose|assess|estimate)\b|\?$"),
    ("creative_writing", r"(?m)^(?:write|compose|generate|create|design|develop|construct|draft|invent|make up|imagine|"
                         r"pretend|produce|craft|devise|build)\b"),
    ("rewriting", r"(?m)^(?:make|convert|change|add|replace|rearrange|reorder|arrange|transform|reformulate|insert|"
                  r"delete|remove|combine|reverse|complete|shorten|expand|sort)\b"),
]


def _first_ask() -> pl.Expr:
    """The first user turn: what a conversation is about (later turns follow it up)."""
    users = pl.col("messages").list.eval(pl.element().filter(pl.element().struct.field("role") == "user"))
    return users.list.first().struct.field("content").fill_null("")


def _task_statement() -> pl.Expr:
    """The first user turn's first paragraph (the instruction, not its input), lower-cased; also without a
    lead-in like 'Given a list, ' so that rules anchored at a line start see the verb."""
    first = _first_ask().str.split("\n\n").list.first().str.to_lowercase().str.slice(0, 400)
    lead_in = r"^(?:please |(?:given|using|for|in|from|based on) [^,]{0,80}, )"
    return pl.concat_str(first.str.replace(lead_in, ""), first, separator="\n")


def _has_input() -> pl.Expr:
    return _first_ask().str.contains("\n\n")


def keyword_category(task: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(category, evidence) expressions from RULES; a prompt with an input and a question is closed QA.

    A multi-turn conversation is categorised by what its first turn asks: the number of turns is a
    dimension of coverage of its own (selection), not a task type that a category quota would cap."""
    branches = []  # (condition, category, evidence), first match wins
    for name, pattern in RULES:
        hit = task.str.contains(pattern)
        if name == "open_qa":
            branches.append((hit & _has_input(), pl.lit("closed_qa"), pl.lit("rule closed_qa: a question about the given input")))
        branches.append((hit, pl.lit(name), pl.lit(f"rule {name}: '") + task.str.extract(f"({pattern})", 1) + pl.lit("'")))
    (first, cat, ev), rest = branches[0], branches[1:]
    cat, ev = pl.when(first).then(cat), pl.when(first).then(ev)
    for when, name, why in rest:
        cat, ev = cat.when(when).then(name), ev.when(when).then(why)
    return cat.otherwise(pl.lit("other")), ev.otherwise(pl.lit("no rule matched"))


def normalise_given(col: pl.Expr) -> pl.Expr:
    """A source's label in the house spelling (Dolly's 'information_extraction' -> 'extraction')."""
    aliases = {"summarization": "summarisation", "information_extraction": "extraction", "general_qa": "open_qa",
               "math": "maths", "mathematics": "maths", "code": "coding", "writing": "creative_writing"}
    key = col.str.strip_chars().str.to_lowercase().str.replace_all(r"[\s\-]+", "_")
    return key.replace(aliases)


def centroid_category(frame: pl.DataFrame, embeddings: pl.DataFrame, min_similarity: float) -> pl.DataFrame:
    """(id, category, evidence) for embedded 'other' rows near enough to a keyword-category centroid."""
    rows = frame.join(embeddings.select("id"), on="id", maintain_order="left").filter(pl.col("category_source") == "inferred")
    named = rows.filter(pl.col("category") != "other")
    others = rows.filter(pl.col("category") == "other")
    if not named.height or not others.height:
        return pl.DataFrame(schema={"id": pl.String, "_cat": pl.String, "_ev": pl.String})
    names = sorted(named["category"].unique().to_list())
    vectors = matrix(embeddings, named["id"])
    labels = named["category"].to_numpy()
    centroids = np.stack([vectors[labels == n].mean(axis=0) for n in names])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    sims = matrix(embeddings, others["id"]) @ centroids.T
    best, score = sims.argmax(axis=1), sims.max(axis=1)
    found = pl.DataFrame({"id": others["id"], "_cat": np.array(names)[best], "_score": score})
    return found.filter(pl.col("_score") >= min_similarity).select(
        "id", "_cat", (pl.lit("nearest category centroid, similarity ") + pl.col("_score").round(2).cast(pl.String)).alias("_ev"))


def categorize(frame: pl.DataFrame, cfg: CategoryConfig, embeddings: pl.DataFrame | None = None) -> pl.DataFrame:
    """Set category, category_source and category_evidence on every row (cheap; all rows, not only alive)."""
    given = pl.col("category").is_not_null() & (pl.col("category_source") != "inferred").fill_null(True)
    cat, ev = keyword_category(_task_statement())
    if not cfg.infer:
        cat, ev = pl.lit(None, pl.String), pl.lit(None, pl.String)
    out = frame.with_columns(
        pl.when(given).then(normalise_given(pl.col("category"))).otherwise(cat).alias("category"),
        pl.when(given).then(pl.lit("given")).when(cat.is_not_null()).then(pl.lit("inferred")).alias("category_source"),
        pl.when(given).then(pl.lit("given")).otherwise(ev).alias("category_evidence"),
    )
    return out if embeddings is None else centroid_categories(out, embeddings, cfg)


def centroid_categories(frame: pl.DataFrame, embeddings: pl.DataFrame, cfg: CategoryConfig) -> pl.DataFrame:
    """Embedded rows the keyword rules left 'other' take the nearest category centroid, when near enough."""
    if cfg.prototype_similarity is None or not cfg.infer:
        return frame
    near = centroid_category(frame, embeddings, cfg.prototype_similarity)
    return frame.join(near, on="id", how="left", maintain_order="left").with_columns(
        pl.coalesce("_cat", "category").alias("category"), pl.coalesce("_ev", "category_evidence").alias("category_evidence"),
    ).drop("_cat", "_ev")


STAGE = Stage(StageName.CATEGORY, lambda frame, cfg, deps: categorize(frame, cfg.category), ("category",),
              adds=COLUMNS, per_row=True)


def _centroids(frame: pl.DataFrame, cfg, deps) -> pl.DataFrame:
    vectors = frame.filter(pl.col("embedding").is_not_null()).select("id", "embedding").sort("id")
    return centroid_categories(frame, vectors, cfg.category)


CENTROID_STAGE = Stage(StageName.CENTROID, _centroids, ("category",), adds={}, per_row=False,
                       reads=("embedding", "category", "category_source", "category_evidence"))
