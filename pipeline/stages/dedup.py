"""Dedup stage: exact duplicates of normalised text, then MinHash LSH near-duplicates, keepers by quality.

`dedup.fields` names the fields that must all match: instruction and response joined into one
text (default), or each of them on its own (`both`), or one alone. A near duplicate must also pass
the checks that tell a paraphrase from a template asked again: responses alike
(`dedup.response_threshold`), the same numbers (`dedup.instruction_numbers`, `dedup.response_numbers`)
and inputs that agree (`dedup.input_threshold`: alike when both requests carry one, stated in the other
record when one does).

Needs the whole set (any two alive records, or a record and one curated by an earlier run, may pair), so it works
on a compact table: id, quality, response length and what the per-row MinHash stage made (exact key, bucket keys). Work
happens once per distinct exact key; only the rows that share a bucket have their texts read (by id) and signed,
and the verdict joins back to rows on `id`. Earlier runs' records come from their `dedup_index.parquet`
(`dedup.previous_runs`) and, with `dedup.shared_index`, from the shared index: the ones sharing a band with an
alive row, which is every one that can pair with it.
"""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from pipeline.dedup.cluster import components, greedy_keepers
from pipeline.dedup.keys import NOT_WORD_RUN, bucket_column, compared_fields, exact_key, field_buckets, folded, signed
from pipeline.dedup.lsh import bucket_keys, candidates_of_any, exact_jaccard, sorted_unique, verified_pairs
from pipeline.dedup.shared import SharedIndex, run_identity
from pipeline.io import rows_by_id
from pipeline.mark import ALIVE, mark
from pipeline.progress import Progress
from pipeline.stage import Deps, Stage, StageName
from pipeline.stages.heuristics import chars
from pipeline.stages.minhash import COLUMNS as KEY_COLUMNS
from pipeline.stages.minhash import keyed
from schemas.config.dedup import DedupConfig
from schemas.ledger import DropReason

if TYPE_CHECKING:
    from schemas.config import CurationConfig

INDEX_FILE = "dedup_index.parquet"
INDEX_VERSION = "v2"  # bump when normalisation, hashing or the index columns change, so old indexes are re-keyed
SHARED_CHUNK = 100_000  # alive rows read and signed at a time for the shared index lookup
Texts = Callable[[pl.Series], pl.DataFrame]  # ids -> their rows' instruction and response, in that order

# Number words read as digits, so 'Name five organs' and 'Name 5 organs' state the same numbers.
CARDINALS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
             "seventeen eighteen nineteen twenty").split()
NUMBER_WORDS = ({w: str(k) for k, w in enumerate(CARDINALS)}
                | {w: str(10 * k) for k, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), 3)}
                | {"hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000"}
                | {w: str(k) for k, w in enumerate("third fourth fifth sixth seventh eighth ninth tenth".split(), 3)})
NUMBER = r"\p{N}+|\b(?:" + "|".join(NUMBER_WORDS) + r")\b"

# A double-quoted span ('Classify this sentence: "The dog barked."'): an input written inline.
QUOTED = r'["“”«»][^"“”«»]{2,}["“”«»]'

# Words of an input its answer repeats that the other record may lack: one word of a sentence is still the
# same request (the judged fixture's `duplicate_means`), two are another input.
ECHO_SLACK = 1

COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "dup_of": (pl.String, "id of the record kept in place of this one (a dedup drop); null otherwise"),
    "dedup_cluster": (pl.String, "id of the kept record of this record's duplicate group (its own id when kept); null if dropped before dedup"),
    "dup_similarity": (pl.Float64, "Jaccard similarity to dup_of, the lower of the compared fields' (1.0 for exact duplicates); null otherwise"),
}


def task_input(instruction: pl.Expr) -> pl.Expr:
    """The input a request applies its task to, folded: what follows its first blank line (Alpaca's input),
    else its double-quoted spans; empty when it has neither."""
    after = instruction.fill_null("").str.split("\n\n").list.slice(1).list.join(" ")
    quoted = instruction.fill_null("").str.extract_all(QUOTED).list.join(" ")
    text = pl.when(after.str.len_chars() > 0).then(after).otherwise(quoted)
    return text.str.to_lowercase().str.replace_all(NOT_WORD_RUN, " ").str.strip_chars()


def numbers(text: pl.Expr) -> pl.Expr:
    """Distinct numbers of a folded text (digit runs, number words as digits, no leading zeros)."""
    found = text.str.extract_all(NUMBER).list.eval(pl.element().replace(NUMBER_WORDS).str.strip_chars_start("0"))
    return found.list.unique()


def numbers_agree(a: pl.Expr, b: pl.Expr, rule: str | None) -> pl.Expr:
    """'equal': the same numbers; 'nested': one side's numbers hold the other's (a longer list); None: always."""
    extra_a, extra_b = a.list.set_difference(b).list.len() > 0, b.list.set_difference(a).list.len() > 0
    return pl.lit(True) if rule is None else ~(extra_a | extra_b) if rule == "equal" else ~(extra_a & extra_b)


def words(text: pl.Expr, letters: bool = False) -> pl.Expr:
    """Distinct words of a folded text; with `letters`, only those holding a letter (numbers have their own check)."""
    found = text.str.split(" ")
    return (found.list.eval(pl.element().filter(pl.element().str.contains(r"\p{L}"))) if letters else found).list.unique()


def _inputs_agree(texts: pl.DataFrame, a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """Whether each pair (rows a, b of `texts`: folded instruction, response, input) asks of the same input.

    Both with an input: their word sets reach Jaccard `threshold`. One with an input: at least
    `threshold` of its words appear in the other record, request or answer (the other may state it
    inline, or answer it; 'a quote about the given concept: Persistence' / 'a quote about success'
    does neither). Either way, at most ECHO_SLACK words of an input that its own answer repeats may be
    missing from the other record: the answer depends on them ('I went to the store' / '... to buy
    apples', answered 'She went to the store to buy apples').
    """
    has = (texts["input"].str.len_chars() > 0).to_numpy()
    ok = np.ones(len(a), dtype=bool)
    both = np.flatnonzero(has[a] & has[b])
    ok[both] = exact_jaccard(texts["input"], a[both], b[both], 1, "word") >= threshold
    found = texts.select(given=words(pl.col("input"), letters=True), said=words(pl.col("response")),
                         known=words(pl.concat_str("instruction", "response", separator=" ")))
    found = found.with_columns(echoed=pl.col("given").list.set_intersection("said"))
    pairs = pl.DataFrame({f"{c}_{side}": found[c].gather(k) for c in ("given", "echoed", "known") for side, k in (("a", a), ("b", b))})
    for x, y, alone in (("a", "b", has[a] & ~has[b]), ("b", "a", has[b] & ~has[a])):
        stated = pairs.select(pl.col(f"given_{x}").list.set_intersection(f"known_{y}").list.len() / pl.col(f"given_{x}").list.len())
        ok &= ~alone | (stated.to_series().fill_nan(1.0).to_numpy() >= threshold)  # no word with a letter: nothing to state
        missing = pairs.select(pl.col(f"echoed_{x}").list.set_difference(f"known_{y}").list.len()).to_series().to_numpy()
        ok &= missing <= ECHO_SLACK
    return ok


def signature_params(cfg: DedupConfig) -> str:
    """Everything a signature depends on; an index built with other params is re-signed."""
    return f"{INDEX_VERSION}|{cfg.fields}|{cfg.shingle}{cfg.ngram}|{cfg.num_perm}|{cfg.seed}"


def _reusable(previous: pl.DataFrame | None, cfg: DedupConfig) -> bool:
    """Earlier runs' keys and signatures serve as they are only when every one was made with these params."""
    width = pl.Array(pl.UInt32, cfg.num_perm)
    return (previous is not None and previous.height > 0 and bool(previous["params"].eq(signature_params(cfg)).all())
            and all(previous.schema.get(f"signature_{f}") == width for f in compared_fields(cfg)))


def _earlier(previous: pl.DataFrame | None, cfg: DedupConfig) -> pl.DataFrame | None:
    """Earlier runs' index rows with what the MinHash stage gives alive rows: key and buckets (from their stored
    signatures when made with these params, else signed again)."""
    if previous is None:
        return None
    fields, reusable = compared_fields(cfg), _reusable(previous, cfg)
    keys = previous.select(pl.col(f"key_{f}").alias(f) if reusable else folded(f).alias(f) for f in fields)
    rows = previous.select("id", "instruction", "response").with_columns(exact_key(keys))
    if cfg.threshold is None:
        return rows.with_columns(pl.lit(None, pl.List(pl.UInt32)).alias("dedup_buckets"))
    sigs = [previous[f"signature_{f}"].to_numpy() if reusable else signed(keys[f], cfg) for f in fields]
    return rows.with_columns(bucket_column([bucket_keys(sig, cfg.bands) for sig in sigs]))


def _ranked(frame: pl.DataFrame, cfg: DedupConfig, earlier: pl.DataFrame | None) -> pl.DataFrame:
    """Alive rows and earlier-run rows, best keeper first: earlier runs, quality, response length, id."""
    rows = frame.filter(ALIVE).select("id", "dedup_key", "dedup_buckets", earlier=pl.lit(False),
                                      score=pl.col("quality").cast(pl.Float64), length=pl.col("response_chars"))
    if earlier is not None:
        old = earlier.select("id", "dedup_key", "dedup_buckets", earlier=pl.lit(True), score=pl.lit(None, pl.Float64),
                             length=pl.lit(0, pl.Int64))
        rows = pl.concat([old, rows])
    rows = rows.sort(["earlier", "score", "length", "id"], descending=[True, True, True, False], nulls_last=True)
    return rows.with_row_index("rank").with_columns(group=pl.col("dedup_key") if cfg.exact else pl.col("rank"))


Rows = Callable[[np.ndarray], pl.DataFrame]  # positions among the candidates -> those rows' instruction and response


def _paired(rows: Rows, a: np.ndarray, b: np.ndarray) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """The rows pairs (a, b) name, read and folded (instruction, response, input), and the pairs' positions in them."""
    docs = sorted_unique(np.concatenate([a, b]))
    texts = rows(docs).select(instruction=folded("instruction"), response=folded("response"), input=task_input(pl.col("instruction")))
    return texts, np.searchsorted(docs, a), np.searchsorted(docs, b)


def _checked(rows: Rows, a: np.ndarray, b: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """Whether each pair (a, b) passes the response, number and input checks; only the paired rows are read."""
    texts, a, b = _paired(rows, a, b)
    similarity = exact_jaccard(texts["response"], a, b, cfg.ngram, cfg.shingle)
    inputs_agree = np.ones(len(a), dtype=bool) if cfg.input_threshold is None else _inputs_agree(texts, a, b, cfg.input_threshold)
    found = texts.select(inst=numbers(pl.col("instruction")), resp=numbers(pl.col("response")))
    pairs = pl.DataFrame({f"{c}_{side}": found[c].gather(k) for c in ("inst", "resp") for side, k in (("a", a), ("b", b))})
    agree = pairs.select(numbers_agree(pl.col("inst_a"), pl.col("inst_b"), cfg.instruction_numbers)
                         & numbers_agree(pl.col("resp_a"), pl.col("resp_b"), cfg.response_numbers)).to_series().to_numpy()
    return agree & inputs_agree & (similarity >= (cfg.response_threshold or 0.0))


def _texts_of(groups: pl.DataFrame, docs: np.ndarray, texts: Texts, earlier: pl.DataFrame | None) -> pl.DataFrame:
    """Instruction and response of the rows `docs` of `groups`, in that order: alive rows' read by id through
    `texts`, earlier runs' from their index rows."""
    picked = groups[docs].select("id", "earlier").with_row_index("at")
    alive = picked.filter(~pl.col("earlier"))
    found = [texts(alive["id"]).select("instruction", "response").with_columns(at=alive["at"])]
    if earlier is not None:
        old = picked.filter("earlier").join(earlier, on="id", how="left", maintain_order="left")
        found.append(old.select("instruction", "response", "at"))
    return pl.concat(found).sort("at").drop("at")


def _near(groups: pl.DataFrame, buckets: list[np.ndarray], cfg: DedupConfig, texts: Texts, earlier: pl.DataFrame | None,
          progress: Progress) -> tuple[np.ndarray, ...]:
    """Per distinct pair of texts (best first): kept one it duplicates (-1 if none), lower field and response
    Jaccard to it, cluster head. Pairs come from the bucket keys (`buckets`: each field's); only the rows that
    share a bucket are read and signed, and only those of verified pairs are read again for the checks."""
    n = groups.height
    if cfg.threshold is None or n < 2:
        return np.full(n, -1), np.ones(n), np.ones(n), np.arange(n)
    i, j = candidates_of_any(buckets, cfg.bucket_all_pairs)
    was = groups["earlier"].to_numpy()
    fresh = ~(was[i] & was[j])  # earlier runs' records all stay, even when alike
    i, j = i[fresh], j[fresh]
    docs = sorted_unique(np.concatenate([i, j]))
    rows: Rows = lambda local: _texts_of(groups, docs[local], texts, earlier)  # noqa: E731
    found = rows(np.arange(len(docs))).select(*[folded(f).alias(f) for f in compared_fields(cfg)])
    keys = [found[f] for f in compared_fields(cfg)]
    progress.start(len(docs) * len(keys), "candidate texts signed")
    sigs = [signed(k, cfg, progress.advance) for k in keys]
    a, b, _ = verified_pairs(sigs, keys, np.searchsorted(docs, i), np.searchsorted(docs, j), cfg.threshold, cfg.ngram, cfg.shingle)
    del sigs
    if len(a):
        ok = _checked(rows, a, b, cfg)
        a, b = a[ok], b[ok]
    i, j = docs[a], docs[b]
    dup_of = greedy_keepers(n, i, j)
    dropped = np.flatnonzero(dup_of >= 0)
    similarity, response = np.ones(n), np.ones(n)
    if len(dropped):
        x, y = np.searchsorted(docs, dropped), np.searchsorted(docs, dup_of[dropped])
        similarity[dropped] = np.min([exact_jaccard(k, x, y, cfg.ngram, cfg.shingle) for k in keys], axis=0)
        paired, x, y = _paired(rows, x, y)
        response[dropped] = exact_jaccard(paired["response"], x, y, cfg.ngram, cfg.shingle)
    return dup_of, similarity, response, components(n, i, j)


def earlier_records(previous: pl.DataFrame | None, shared: pl.DataFrame | None) -> pl.DataFrame | None:
    """Earlier runs' index rows from both places, one row per id (the Parquet one first, as load_previous does)."""
    found = [f for f in (previous, shared) if f is not None]
    if len(found) < 2:
        return found[0] if found else None
    return pl.concat(found, how="diagonal_relaxed").unique("id", keep="first", maintain_order=True)


def shared_candidates(frame: pl.DataFrame, cfg: DedupConfig, shared: SharedIndex, texts: Texts,
                      run: str | None = None) -> pl.DataFrame | None:
    """The shared index's rows sharing a band with an alive row (less those `run` added itself), sorted by id; the
    alive rows are read and signed SHARED_CHUNK at a time."""
    ids, found = frame.filter(ALIVE)["id"], []
    for lo in range(0, ids.len(), SHARED_CHUNK):
        part = texts(ids.slice(lo, SHARED_CHUNK))
        rows = shared.candidates({f: signed(part.select(folded(f)).to_series(), cfg) for f in compared_fields(cfg)}, run)
        found += [rows] if rows is not None else []
    return pl.concat(found).unique("id", keep="first").sort("id") if found else None


def verdicts(frame: pl.DataFrame, cfg: DedupConfig, previous: pl.DataFrame | None = None, shared: SharedIndex | None = None,
             run: str | None = None, progress: Progress | None = None, texts: Texts | None = None) -> pl.DataFrame:
    """id -> dup_of, dedup_cluster, dup_similarity and drop reason for every alive row.

    `frame` holds the MinHash stage's columns and the heuristics' `response_chars` (made here when it does not);
    `texts(ids)` reads those rows' instruction and response (from `frame` when not given). With `shared`, the
    records in the shared index that share a band with an alive row join `previous`.
    """
    if "dedup_key" not in frame.columns:
        frame = keyed(frame, cfg)
    if "response_chars" not in frame.columns:
        frame = frame.with_columns(response_chars=chars("response"))
    texts = texts or (lambda ids: rows_by_id(frame, ids, ["instruction", "response"]))
    if shared is not None:
        previous = earlier_records(previous, shared_candidates(frame, cfg, shared, texts, run))
    earlier = _earlier(previous, cfg)
    rows = _ranked(frame, cfg, earlier)
    groups = rows.unique("group", keep="first", maintain_order=True)
    buckets = field_buckets(groups["dedup_buckets"], cfg) if cfg.threshold is not None else []
    rows, groups = rows.drop("dedup_buckets"), groups.drop("dedup_buckets")  # held once, as numpy
    dup_of, similarity, response, head = _near(groups, buckets, cfg, texts, earlier, progress or Progress("dedup"))
    near = np.where(dup_of >= 0, dup_of, 0)
    groups = groups.select(
        "group", keeper=pl.col("id"), keeper_rank=pl.col("rank"),
        near_of=pl.when(pl.Series(dup_of >= 0)).then(groups["id"].gather(near)),
        near_earlier=groups["earlier"].gather(near), near_similarity=pl.Series(similarity),
        near_response=pl.Series(response),
        keeper_earlier=pl.col("earlier"), dedup_cluster=groups["id"].gather(head))
    out = rows.filter(~pl.col("earlier")).join(groups, on="group", how="left", maintain_order="left")
    exact = pl.col("keeper_rank") != pl.col("rank")  # not by id: an earlier run may have curated this very id
    seen = pl.when(exact).then(pl.col("keeper_earlier")).otherwise(pl.col("near_earlier"))
    reason = (pl.when(pl.col("dup_of").is_null()).then(None)
              .when(seen).then(pl.lit(str(DropReason.SEEN_IN_EARLIER_RUN)))
              .when(exact).then(pl.lit(str(DropReason.EXACT_DUPLICATE)))
              .otherwise(pl.lit(str(DropReason.NEAR_DUPLICATE))))
    return out.with_columns(
        dup_of=pl.when(exact).then(pl.col("keeper")).otherwise(pl.col("near_of")),
        dup_similarity=pl.when(exact).then(1.0).when(pl.col("near_of").is_not_null()).then(pl.col("near_similarity").round(4)),
        response_similarity=pl.when(~exact & pl.col("near_of").is_not_null()).then(pl.col("near_response")),
    ).select("id", "dup_of", "dedup_cluster", "dup_similarity", "response_similarity", reason=reason)


def dedup(frame: pl.DataFrame, cfg: DedupConfig, previous: pl.DataFrame | None = None, shared: SharedIndex | None = None,
          run: str | None = None, progress: Progress | None = None, texts: Texts | None = None) -> pl.DataFrame:
    """Mark exact, near and earlier-run duplicates among alive rows; add COLUMNS to every row.

    `previous`: earlier runs' index rows; `shared`: the shared index, `run` the identity of this run in it;
    `texts`: as in `verdicts`."""
    found = verdicts(frame, cfg, previous, shared, run, progress, texts)
    frame = frame.drop([c for c in COLUMNS if c in frame.columns]).join(found, on="id", how="left", maintain_order="left")
    frame = mark(frame, pl.col("reason").is_not_null(), StageName.DEDUP, pl.col("reason"), _detail(cfg))
    return frame.drop("reason", "response_similarity")


def _detail(cfg: DedupConfig) -> pl.Expr:
    """Why a row is a duplicate: 'jaccard 0.71 (response 0.83), numbers and inputs agree with ID' for a near one."""
    agree = ["numbers"] * bool(cfg.instruction_numbers or cfg.response_numbers) + ["inputs"] * (cfg.input_threshold is not None)
    checked = f" {' and '.join(agree)} agree" if agree else ""
    near = pl.format("jaccard {} (response {}),{} with {}", pl.col("dup_similarity").round(2),
                     pl.col("response_similarity").round(2), pl.lit(checked), pl.col("dup_of"))
    plain = pl.format("jaccard {} with {}", pl.col("dup_similarity").round(2), pl.col("dup_of"))
    return pl.when(pl.col("response_similarity").is_not_null()).then(near).otherwise(plain)


def build_index(ledger: pl.DataFrame, cfg: DedupConfig) -> pl.DataFrame:
    """Keys and signatures of each compared field of the rows still alive (the curated ones), for later runs."""
    fields = compared_fields(cfg)
    kept = ledger.filter(ALIVE).select("id", "instruction", "response", *[folded(f).alias(f"key_{f}") for f in fields]).sort("id")
    sig = {f"signature_{f}": pl.Series(signed(kept[f"key_{f}"], cfg), dtype=pl.Array(pl.UInt32, cfg.num_perm)) for f in fields}
    return kept.with_columns(**sig, params=pl.lit(signature_params(cfg)))


def load_previous(run_dirs: list[str]) -> pl.DataFrame | None:
    """The dedup indexes of earlier runs, one frame; None when no run is given."""
    frames = []
    for run_dir in run_dirs:
        path = Path(run_dir) / INDEX_FILE
        if not path.is_file():
            raise FileNotFoundError(f"dedup.previous_runs: {run_dir} has no {INDEX_FILE} (not a finished winnow run dir?)")
        frames.append(pl.read_parquet(path))
    # diagonal: indexes of other versions or fields have other columns (their params then differ: they are re-signed)
    return pl.concat(frames, how="diagonal_relaxed").unique("id", keep="first", maintain_order=True) if frames else None


def open_shared_index(cfg: DedupConfig) -> SharedIndex | None:
    """The index `dedup.shared_index` names, connected and answering (a ConfigError line if not); None when off."""
    if cfg.shared_index is None:
        return None
    return SharedIndex.open(cfg.shared_index, signature_params(cfg), compared_fields(cfg), cfg.num_perm, cfg.bands, cfg.seed)


def _stage(frame: pl.DataFrame, cfg: "CurationConfig", deps: Deps) -> pl.DataFrame:
    """The stage: earlier runs from deps, texts read by id from the stage's input file; in the shared index this
    run is its directory and ledger ids."""
    shared = deps.shared_index
    run = run_identity(deps.run_dir, frame["id"]) if shared is not None and deps.run_dir is not None else None
    source = deps.stage_input if deps.stage_input is not None else frame
    texts = lambda ids: rows_by_id(source, ids, ["instruction", "response"])  # noqa: E731
    return dedup(frame, cfg.dedup, deps.previous_index, shared, run, deps.progress("dedup"), texts)


STAGE = Stage(StageName.DEDUP, _stage, ("dedup",), adds=COLUMNS, per_row=False, reads=("quality", "response_chars", *KEY_COLUMNS),
              files=lambda cfg: [str(Path(r) / INDEX_FILE) for r in cfg.dedup.previous_runs])
