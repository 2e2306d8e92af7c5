"""LIMA-style selection: the best `budget` rows of the candidate pool, kept diverse, each choice explained.

Needs the whole candidate set at once. The pool (`candidates`) is chosen by the heuristic `quality`:
alive rows at or above the quality floor, the first `pool_factor x budget` of them; only those are
embedded, and a spread of them is scored (pipeline.stages.score) and examined here. Rows rank by
`selection_score` in steps of
`quality_step` (then a seeded hash of the id). quality_coverage (pipeline.stages.coverage) maximises
coverage and quality together; deita takes the tiers of equal rank best first and, inside a tier,
always the row least similar to everything picked so far, refusing rows whose cosine similarity to a
pick reaches `max_similarity`; kcenter does the same over one tier of all candidates, without the
limit. Places still open at the end go to over-quota rows (unless quotas are strict), then (deita)
to rows over the similarity limit, and their reasons say so.
"""

import hashlib
import math

import numpy as np
import polars as pl

from pipeline.mark import ALIVE, mark
from pipeline.stage import Stage, StageName
from pipeline.stages.coverage import LazyGreedy, coverage_similarity
from pipeline.stages.embed import matrix
from schemas.config.select import SelectConfig
from schemas.ledger import DropReason

COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "selected": (pl.Boolean, "chosen for the curated set"),
    "selection_rank": (pl.Int32, "order in which selection accepted the row (1 = first); null if not selected"),
    "selection_reason": (pl.String, "why the row was chosen: quality, similarity to earlier picks, quota use"),
}
GROUPS = {"category": "category_quota", "lang": "language_quota"}
HELPERS = ["_q", "_h", "_band", "_category", "_lang"]


def _seeded_hash(ids: pl.Series, seed: int) -> pl.Series:
    return pl.Series([hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:16] for i in ids.to_list()], dtype=pl.String)


def _steps(step: float) -> pl.Expr:
    """Quality step of each row: 0.93 and 0.97 -> 9 for a step of 0.1; a perfect 1.0 joins the top step."""
    return (pl.col("_q") / step + 1e-9).floor().clip(upper_bound=math.ceil(1 / step - 1e-9) - 1)


def ranked(frame: pl.DataFrame, cfg: SelectConfig, by: str = "selection_score") -> pl.DataFrame:
    """Alive rows, best first by `by` (as `_q`, null as 0), with each quota group column filled.

    The pool is chosen by the heuristic `quality`; the choice within it by `selection_score`, which the
    score stage sets on the pool (model scores, or `quality` again when scoring is off).
    """
    alive = frame.filter(ALIVE)
    alive = alive.with_columns(
        pl.col(by).fill_null(0.0).cast(pl.Float64).alias("_q"),
        _seeded_hash(alive["id"], cfg.seed).alias("_h"),
    ).with_columns(
        (_steps(cfg.quality_step) if cfg.quality_step else pl.col("_q")).alias("_band"),
        *[(pl.col(g) if g in alive.columns else pl.lit(None, pl.String)).fill_null("unknown").alias(f"_{g}") for g in GROUPS],
    )
    if cfg.prefer_longer:
        return alive.sort(["_band", "response_words", "_h"], descending=[True, True, False], nulls_last=True)
    return alive.sort(["_band", "_h"], descending=[True, False])


def cap(cfg: SelectConfig, group: str, value: str) -> int | None:
    """Most rows of one category or language the budget admits, or None when unlimited."""
    shares = getattr(cfg, GROUPS[group])
    if cfg.budget is None or not shares or (value not in shares and "*" not in shares):
        return None
    return max(1, math.floor(shares.get(value, shares.get("*")) * cfg.budget))


def candidates(frame: pl.DataFrame, cfg: SelectConfig) -> pl.DataFrame:
    """The rows selection examines, best first: these, and only these, need embeddings.

    The first pool_factor x budget rows above the floor, taking at most pool_factor x quota of a
    category or language first; unless quotas are strict, the best rows over those caps fill the
    places left, so that selection can still fill its budget when one group dominates the data.
    """
    rows = ranked(frame, cfg, by="quality")
    if cfg.quality_floor is not None:
        rows = rows.filter(pl.col("_q") >= cfg.quality_floor)
    if cfg.budget is None or cfg.pool_factor is None:
        return rows.drop(HELPERS)
    rows = rows.with_row_index("_order")
    within = pl.lit(True)
    for group in GROUPS:
        limits = {v: cap(cfg, group, v) for v in rows[f"_{group}"].unique().to_list()}
        limit = pl.col(f"_{group}").replace_strict(limits, return_dtype=pl.Int64)
        within = within & (pl.int_range(pl.len()).over(f"_{group}") < (limit * cfg.pool_factor).ceil()).fill_null(True)
    size = math.ceil(cfg.pool_factor * cfg.budget)
    pool = rows.filter(within).head(size)
    if not cfg.strict_quota:
        pool = pl.concat([pool, rows.filter(~within).head(size - pool.height)]).sort("_order")
    return pool.drop(HELPERS + ["_order"])


def score_labels(rows: pl.DataFrame) -> list[str]:
    """What ranked each row: its model-based score and the signals behind it, or its heuristic quality."""
    return [f"quality {q:.2f}" if e is None else f"score {q:.2f} ({e})" for q, e in rows.select("_q", "score_evidence").iter_rows()]


class Tally:
    """Picks per category and language against their caps."""

    def __init__(self, cfg: SelectConfig):
        self.cfg, self.counts = cfg, {g: {} for g in GROUPS}

    def full(self, values: dict[str, str]) -> str | None:
        for g, v in values.items():
            limit = cap(self.cfg, g, v)
            if limit is not None and self.counts[g].get(v, 0) >= limit:
                return f"{'category' if g == 'category' else 'language'} {v} already has its quota of {limit}"
        return None

    def add(self, values: dict[str, str]) -> str:
        parts = []
        for g, v in values.items():
            self.counts[g][v] = self.counts[g].get(v, 0) + 1
            limit = cap(self.cfg, g, v)
            if g != "category" and limit is None:
                continue
            parts.append(f"{'category' if g == 'category' else 'lang'} {v} {self.counts[g][v]}" + (f"/{limit}" if limit else ""))
        return ", ".join(parts)


OVER_QUOTA = " (over quota: the pool ran out of rows within their quotas)"
OVER_LIMIT = " (over the similarity limit: the pool ran out of rows below it)"


class Greedy:
    """Farthest-first picking (least similar to every pick first) under the budget, quotas and limit."""

    def __init__(self, rows: pl.DataFrame, vectors: np.ndarray, cfg: SelectConfig):
        self.cfg, self.vectors, self.tally = cfg, vectors, Tally(cfg)
        self.ids, step = rows["id"].to_list(), cfg.quality_step if cfg.method == "deita" else None
        self.quality = [label + (f" (tier {b * step:.2g}-{min(1.0, (b + 1) * step):.2g})" if step else "")
                        for label, b in zip(score_labels(rows), rows["_band"].to_list())]
        self.groups = [{"category": c, "lang": g} for c, g in rows.select("_category", "_lang").iter_rows()]
        self.limit = cfg.max_similarity if cfg.method == "deita" else None
        self.picks: list[int] = []
        self.out: dict[int, tuple] = {}

    def reject(self, i: int, code: DropReason, why: str) -> None:
        """Record why row i was not picked; a later pass that examines it again has the last word."""
        self.out[i] = (None, code, why)

    def reject_rest(self, rows: np.ndarray, maxsim: np.ndarray, near: np.ndarray) -> None:
        """Every row still open: the budget is filled, or even the least similar is over the limit."""
        for i, s, j in zip(rows.tolist(), maxsim.tolist(), near.tolist()):
            if len(self.picks) == self.cfg.budget:
                self.reject(i, DropReason.BUDGET_EXHAUSTED, f"budget of {self.cfg.budget} filled before its turn; "
                            f"most similar pick {self.ids[j]} at {s:.2f}")
            else:
                self.reject(i, DropReason.TOO_SIMILAR_TO_SELECTED, f"cosine similarity {s:.3f} to selected "
                            f"{self.ids[j]} (limit {self.limit})")

    def run(self, idx: np.ndarray, relax_quota: bool = False, relax_limit: bool = False) -> None:
        """Pick among rows `idx` (in seeded order, for ties) the one least similar to all picks, until none is left."""
        limit = None if relax_limit else self.limit
        block = self.vectors[idx]
        sims = block @ self.vectors[self.picks].T if self.picks else np.full((len(idx), 1), -1.0)
        maxsim, near = sims.max(axis=1), np.array(self.picks or [-1])[sims.argmax(axis=1)]
        open_ = np.ones(len(idx), dtype=bool)
        while open_.any():
            k = int(np.where(open_, maxsim, np.inf).argmin())
            i = int(idx[k])
            if len(self.picks) == self.cfg.budget or (limit is not None and maxsim[k] >= limit):
                self.reject_rest(idx[open_], maxsim[open_], near[open_])
                return
            open_[k] = False
            full = self.tally.full(self.groups[i])
            if full and not relax_quota:
                self.reject(i, DropReason.QUOTA_FULL, full)
                continue
            over_limit = self.limit is not None and maxsim[k] >= self.limit
            self.accept(i, float(maxsim[k]), (OVER_QUOTA if full else "") + (OVER_LIMIT if over_limit else ""))
            s = block @ self.vectors[i]
            near, maxsim = np.where(s > maxsim, i, near), np.maximum(maxsim, s)

    def accept(self, i: int, maxsim: float, note: str) -> None:
        if not self.picks:
            how = "first pick"
        elif self.cfg.method == "kcenter":
            how = f"k-center pick, distance {1 - maxsim:.2f} to the nearest earlier pick"
        else:
            how = f"max similarity to earlier picks {maxsim:.2f}"
        self.picks.append(i)
        why = f"{self.quality[i]}; {how}; {self.tally.add(self.groups[i])}{note}"
        self.out[i] = (len(self.picks), None, why)


def _choose(rows: pl.DataFrame, vectors: np.ndarray, cfg: SelectConfig) -> list[tuple]:
    """deita: quality tiers best first, farthest-first inside a tier; kcenter: one tier of all candidates.

    Places still open then go, best tier first, to over-quota rows (unless quotas are strict), and
    last to rows over the similarity limit, so a pool of at least `budget` rows fills the budget.
    """
    tier = rows["_band"].rle_id().to_numpy() if cfg.method == "deita" else np.zeros(len(rows))
    tiers = np.split(np.arange(len(rows)), np.flatnonzero(np.diff(tier)) + 1)
    greedy = Greedy(rows, vectors, cfg)
    for idx in tiers:
        greedy.run(idx)
    quota, similar = {DropReason.QUOTA_FULL}, {DropReason.TOO_SIMILAR_TO_SELECTED}
    passes = [(similar, True)] if cfg.strict_quota else [(quota, False), (quota | similar, True)]
    for codes, relax_limit in passes:
        for idx in tiers:
            waiting = [i for i in idx if greedy.out[i][0] is None and greedy.out[i][1] in codes]
            if waiting and len(greedy.picks) < cfg.budget:
                greedy.run(np.array(waiting), relax_quota=not cfg.strict_quota, relax_limit=relax_limit)
    return [(greedy.ids[i], *greedy.out[i]) for i in range(len(rows))]


def _coverage_groups(rows: pl.DataFrame) -> np.ndarray:
    """Rows cover each other only within one language and one turn class (single-turn or multi-turn)."""
    key = pl.concat_str(pl.col("_lang"), (pl.col("n_turns") > 1).cast(pl.String), separator="|")
    return rows.select(key.rank("dense")).to_series().to_numpy()


def _choose_coverage(rows: pl.DataFrame, vectors: np.ndarray, cfg: SelectConfig) -> list[tuple]:
    """quality_coverage: lazy-greedy facility location plus quality; quotas refuse rows, relaxed last unless strict."""
    sims = coverage_similarity(vectors, _coverage_groups(rows))
    greedy = LazyGreedy(sims, rows["_q"].to_numpy(), cfg.budget, cfg.quality_weight)
    ids, labels, tally = rows["id"].to_list(), score_labels(rows), Tally(cfg)
    groups = [{"category": c, "lang": g} for c, g in rows.select("_category", "_lang").iter_rows()]
    out: dict[int, tuple] = {}

    def accept(i: int, gain: float, relax: bool) -> bool:
        full = tally.full(groups[i])
        if full and not relax:
            out[i] = (None, DropReason.QUOTA_FULL, full)
            return False
        how = f"coverage gain {gain:.4f} (mean similarity added over the pool of {len(ids)})"
        out[i] = (len(greedy.picks) + 1, None, f"{labels[i]}; {how}; {tally.add(groups[i])}{OVER_QUOTA if full else ''}")
        return True

    greedy.run(list(range(len(ids))), lambda i, gain: accept(i, gain, relax=False))
    if not cfg.strict_quota:
        waiting = [i for i in range(len(ids)) if out.get(i, (0, None))[1] == DropReason.QUOTA_FULL]
        greedy.run(waiting, lambda i, gain: accept(i, gain, relax=True))
    rest = [i for i in range(len(ids)) if i not in out]
    if rest and greedy.picks:
        sims = vectors[rest] @ vectors[greedy.picks].T
        near, top = np.array(greedy.picks)[sims.argmax(axis=1)], sims.max(axis=1)
        for i, j, s in zip(rest, near.tolist(), top.tolist()):
            out[i] = (None, DropReason.BUDGET_EXHAUSTED, f"budget of {cfg.budget} filled before its turn (gain "
                      f"{greedy.last_gain.get(i, greedy.gain(i)):.5f}); most similar pick {ids[j]} at {s:.2f}")
    return [(ids[i], *out[i]) for i in range(len(ids))]


def select(frame: pl.DataFrame, embeddings: pl.DataFrame | None, cfg: SelectConfig) -> pl.DataFrame:
    """Choose the curated set among alive rows; mark the rest with stage 'select' and why.

    With a budget, the rows examined are the alive rows above the floor that have embeddings;
    without one, every row above the floor is kept and `embeddings` may be None.
    """
    rows = ranked(frame, cfg)
    floor = cfg.quality_floor
    above = rows.filter(pl.col("quality").fill_null(0.0) >= floor) if floor is not None else rows
    if cfg.budget is None:
        examined = above
        results = [(i, r + 1, None, f"quality {q:.2f}; no budget, every survivor kept")
                   for r, (i, q) in enumerate(above.select("id", "_q").iter_rows())]
    else:
        if embeddings is None:
            raise ValueError("select with a budget needs embeddings of the rows `candidates` returns")
        examined = above.filter(pl.col("id").is_in(embeddings["id"].implode()))
        choose = _choose_coverage if cfg.method == "quality_coverage" else _choose
        results = choose(examined, matrix(embeddings, examined["id"]), cfg) if examined.height else []
    decided = pl.DataFrame(results, schema={"_id": pl.String, "_rank": pl.Int32, "_code": pl.String, "_why": pl.String}, orient="row")
    out = frame.join(decided, left_on="id", right_on="_id", how="left", maintain_order="left")
    out = mark(out, pl.col("_code").is_not_null(), StageName.SELECT, pl.col("_code"), pl.col("_why"))
    if floor is not None:
        out = mark(out, pl.col("quality").fill_null(0.0) < floor, StageName.SELECT, DropReason.BELOW_QUALITY_FLOOR,
                   pl.format("quality {} below the floor {}", pl.col("quality").round(3), pl.lit(floor)))
    out = mark(out, pl.col("_rank").is_null(), StageName.SELECT, DropReason.BUDGET_EXHAUSTED,
               f"not examined: outside the candidate pool of the best {examined.height} rows (select.pool_factor)")
    return out.with_columns(
        pl.col("_rank").is_not_null().alias("selected"), pl.col("_rank").alias("selection_rank"),
        pl.when(pl.col("_rank").is_not_null()).then(pl.col("_why")).alias("selection_reason"),
    ).drop("_rank", "_code", "_why")


def _run(frame: pl.DataFrame, cfg, deps) -> pl.DataFrame:
    """The choice among the scored rows, by their vectors (the `embedding` column, which the runner writes out)."""
    scored = frame.filter(pl.col("selection_score").is_not_null())["id"].implode()
    vectors = frame.filter(pl.col("embedding").is_not_null() & pl.col("id").is_in(scored)).select("id", "embedding")
    return select(frame.drop("embedding"), vectors, cfg.select).with_columns(frame["embedding"])


STAGE = Stage(StageName.SELECT, _run, ("select",), adds=COLUMNS, per_row=False,
              reads=("embedding", "selection_score", "score_evidence", "quality", "response_words", "lang", "category", "n_turns"))
