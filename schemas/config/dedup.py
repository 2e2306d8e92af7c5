"""Exact and MinHash LSH dedup."""

from typing import Literal

from pydantic import Field, model_validator

from schemas.config.base import Section


class SharedIndexConfig(Section):
    """Where the shared cross-run dedup index lives: a Redis database that runs on several machines read
    before dedup and add their curated records to after export."""

    type: Literal["redis"] = Field("redis", description="Backend; Redis (datasketch's MinHashLSH Redis storage) is the one there is.")
    host: str = Field("127.0.0.1", min_length=1, description="Redis host.")
    port: int = Field(6379, ge=1, le=65535, description="Redis port.")
    db: int = Field(0, ge=0, description="Redis database number.")
    name: str = Field(
        "winnow", pattern=r"^[A-Za-z0-9_.-]+$",
        description="Prefix of every key the index writes; runs with the same name (and the same signature settings: "
        "fields, shingle, ngram, num_perm, bands, seed) share one index, other settings get their own under the name.")
    timeout: float = Field(5.0, gt=0, description="Seconds to wait for a connection (preflight fails with one line after it).")


class DedupConfig(Section):
    """Exact, then MinHash LSH near-duplicate removal. Defaults measured by bench/dedup.py on Alpaca 52K
    plus 2,000 planted copies with 5-15% of their words edited (numbers below are from that run)."""

    exact: bool = Field(True, description="Drop exact duplicates of the compared text after folding case, punctuation and spacing.")
    fields: Literal["joined", "both", "instruction", "response"] = Field(
        "joined", description="Fields that must all reach the threshold: 'joined' (instruction, with Alpaca's input, and "
        "response as one text), 'both' (instruction and response each on its own), or one of them. On Alpaca 52K, "
        "110 sampled natural drops read one by one (tests/fixtures/dedup_alpaca_judged.json): 'joined' at 0.5 is "
        "right on 56% (62/110; the wrong ones share a template or a passage); 'both' at 0.42 (the threshold that keeps "
        "95.7% of the planted copies) on 35% (39/110): near-identical instructions are rare in Alpaca (its generator "
        "filtered them), so what 'both' finds is mostly templates with different numbers ('square root of 156' / "
        "'of 121'); 'both' at 0.5 keeps 91.4% of the planted copies. Paraphrased requests with one answer "
        "(instruction Jaccard 0.2-0.5) are most of the true duplicates 'joined' finds: 'both' at 0.42 finds only "
        "31% (19/62) of those judged true in the 'joined' sample. Cost of 'both': about 10% more CPU in bench/dedup.py.")
    threshold: float | None = Field(
        0.5, gt=0, le=1,
        description="Jaccard similarity of shingle sets at or above which two records are near-duplicates; None turns "
        "near-dup off. 0.5 finds 98.9% of the planted copies (99.8% of those whose Jaccard reaches 0.5) with largest "
        "cluster 7; 0.6 misses 6% of them; 0.4 chains templated prompts into clusters of 26. Unrelated Alpaca pairs: "
        "99th percentile 0.07, max 0.13.")
    response_threshold: float | None = Field(
        0.4, gt=0, le=1,
        description="Jaccard similarity the responses alone must also reach for a near (not exact) duplicate; None "
        "turns it off. Different tasks over a shared passage answer differently (response Jaccard under 0.2). On the "
        "203 distinct hand-judged Alpaca pairs, with both number checks 'nested': 0.4 keeps 92% of the old rule's true "
        "duplicates at drop precision 0.82 (old rule 0.56); 0.6 reaches 0.84 but keeps 74% of them and only 91% of "
        "the planted copies (0.4: 96.7%; short answers lose most shingles to a one-word edit).")
    instruction_numbers: Literal["equal", "nested"] | None = Field(
        "nested", description="The numbers of the two instructions (with input; digit runs and number words, 'five' = "
        "'5') must be the same set ('equal'), or one set must hold the other ('nested'), for a near duplicate; None turns "
        "it off. A template asked of other numbers ('side 10' / 'side 9', 'hex of 255' / 'of 18', 'four cities' / 'five') "
        "has another answer. 'equal' is 3 points more precise on the judged pairs but keeps 93.8% of the planted copies "
        "(their edits insert words, numbers among them) and loses 'Fibonacci' / 'Fibonacci up to 20'.")
    response_numbers: Literal["equal", "nested"] | None = Field(
        "nested", description="The same check on the responses; 'nested' lets one answer list more (a longer list, a "
        "worked example) but not other numbers ('143' / '22'). 'equal' loses 11 more judged true duplicates (code, lists).")
    input_threshold: float | None = Field(
        0.5, gt=0, le=1,
        description="Inputs must agree for a near duplicate. When both requests carry an input (what follows a blank "
        "line, Alpaca's input, or else double-quoted text), the Jaccard similarity of the inputs' word sets must reach "
        "this; when only one does, at least this share of its words (those with a letter) must appear in the other "
        "record, request or answer; and either way at most one input word that its own answer repeats may be missing "
        "from the other record (one word of a sentence is still the same request, two are another input). None turns "
        "these off. One template applied to another input is another task, however alike the answers ('classify the "
        "sentence \u201cThe dog barked\u201d' / '\u201cThe sun is shining\u201d', both 'declarative'; 'a quote about the "
        "given concept: Persistence' / 'a quote about success', one Churchill quote for both; 'I went to the store' / "
        "'... to buy apples', answered '... to buy apples'). Word sets, not char 5-grams: a one-word edit of a short "
        "input keeps half its words but few of its 5-grams (5-grams at 0.25 cost 0.9 points of planted recall, words "
        "0.1). On Alpaca 52K the default drops 118 rows as near duplicates, all hand-judged, 103 right: precision 0.87 "
        "(both-input Jaccard alone: 119, 101 right, 0.85; no input check: 126, 102 right, 0.81); the one-sided and "
        "echo checks refuse 4 wrong drops (3 quote pairs, a rewrite of another sentence) and no pair judged right, keep "
        "96.3% of bench/dedup.py's planted copies (96.45% without them; the 3 lost are copies whose edits cut off, "
        "merged or made up an input) and cost no measurable time. The 15 wrong drops left (9 borderline: a joke or "
        "quote returned for other requests, a list of another scope or count; and 'Antarctic blue whale' / 'blue "
        "whale', a summary / the wrong statements of one passage...) share wording and answer. No lexical gate tried "
        "gets past 0.89 while keeping 95% of the planted copies (task statements of two requests over one input "
        "sharing words refuse 2 more, but judged duplicates sit 0.03-0.08 above them, whatever the measure). A MiniLM "
        "cosine of the two instructions (of their task statements when both carry an input) of at least 0.5 on the "
        "verified pairs would reach 0.90 (102 of 113) and keep about 95.6% of the planted copies, but embeds every "
        "paired row: 30 instructions/s on 2 busy CPU cores, some 40x this stage's time in bench/dedup.py; not adopted.")
    shingle: Literal["char", "word"] = Field(
        "char", description="Shingle unit. Characters survive word edits: a 10% word edit keeps a median char-5-gram "
        "Jaccard of 0.83 against 0.54 for word 5-grams; word 2-grams found 92.5% of the planted copies.")
    ngram: int = Field(
        5, ge=1, le=32, description="Shingle length in units. 5 chars: 4 finds 1 point more of the copies but drops 8% "
        "more records at the same threshold (unrelated pairs reach 0.16) from 5x the candidate pairs; 7 misses 5.7% of the copies.")
    num_perm: int = Field(
        128, ge=8, le=1024, description="MinHash permutations (signature length). 128 = 32 bands x 4 rows: candidate "
        "probability 0.87 at Jaccard 0.5, 0.99 at 0.6; sample pair recall 0.993. 64 (16x4) loses 2.6 points of recall.")
    bands: int = Field(
        32, ge=1, description="LSH bands; must divide num_perm (rows = num_perm / bands). 4-row bands make 45K "
        "candidate pairs on 54K records; 3-row bands (96 = 32x3) 386K, growing with the square of the set.")
    seed: int = Field(1, description="Seed of the MinHash permutations (datasketch's default is 1).")
    bucket_all_pairs: int = Field(
        16, ge=2, description="LSH buckets up to this size pair all their members; larger ones (families of "
        "near-copies) pair each member with the bucket's best record and its neighbour, so pairs grow linearly. "
        "4 loses 0.4 points of pair recall; 64 adds 27% candidates and finds nothing more.")
    batch_chars: int = Field(
        1 << 18, ge=1 << 12, description="Codepoints shingled and signed per batch (per thread); 256K keeps the arrays "
        "in cache, 1M is ~15% slower. Memory is flat in the set size.")
    previous_runs: list[str] = Field(
        default_factory=list,
        description="Earlier run directories; records they curated are not admitted again.",
    )
    shared_index: SharedIndexConfig | None = Field(
        None, description="A shared index of every record curated by the runs that use it (Redis), read like "
        "previous_runs by the dedup stage and added to by each run's export, so scheduled runs on several machines do "
        "not admit each other's records; None (the default) turns it off. Both it and previous_runs may be given.")

    @model_validator(mode="after")
    def _bands_divide_perms(self):
        if self.num_perm % self.bands:
            raise ValueError(f"bands ({self.bands}) must divide num_perm ({self.num_perm})")
        if self.shared_index is not None and self.bands < 2:
            raise ValueError("shared_index needs at least 2 bands (datasketch's MinHashLSH)")
        return self
