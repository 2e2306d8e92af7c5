"""The shared cross-run dedup index in Redis: the same ledger as the Parquet index, idempotent inserts,
a run never meeting itself, datasketch's own layout, and one clear error when the server does not answer."""

import json
import shutil
import socket
import subprocess
import time

import numpy as np
import polars as pl
import pytest

from pipeline import runner
from pipeline.dedup.keys import folded, signed
from pipeline.dedup.shared import band_keys, run_identity
from pipeline.mark import ALIVE
from pipeline.stages.dedup import INDEX_FILE, build_index, dedup, load_previous, open_shared_index
from schemas.config import ConfigError, CurationConfig, DedupConfig, parse_config
from schemas.ledger import DropReason
from tests.conftest import ROOT
from tests.test_dedup import BASE, EDITED, OTHER, make

redis = pytest.importorskip("redis")
datasketch = pytest.importorskip("datasketch")

LEDGER = ["id", "drop_stage", "drop_reason", "drop_detail", "dup_of", "dedup_cluster", "dup_similarity"]
SEEN, NEAR, EXACT = (str(r) for r in (DropReason.SEEN_IN_EARLIER_RUN, DropReason.NEAR_DUPLICATE, DropReason.EXACT_DUPLICATE))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_port(tmp_path):
    """A throwaway redis-server on 127.0.0.1 (no persistence, its dir under tmp_path), stopped after the test."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port, folder = free_port(), tmp_path / "redis"
    folder.mkdir()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None:
                    pytest.fail(f"redis-server exited with {proc.returncode}")
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not answer within 10 s")
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def shared_cfg(port: int, **dedup) -> DedupConfig:
    return DedupConfig(shared_index={"port": port, "name": "test"}, **dedup)


SQUARE = ("Calculate the perimeter of a square whose side is {k} centimetres long, and show the working step by step.",
          "The perimeter of a square is four times its side, so the perimeter is 4 x {k} = {p} centimetres.")


def square(k: int) -> tuple[str, str]:
    return SQUARE[0].format(k=k), SQUARE[1].format(k=k, p=4 * k)


def runs() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Run 1 and run 2 ledgers so far (all alive but one): across the runs exact, near and very-same copies, a copy of a
    record run 1 rejected, and a family of 24 templated records (other numbers, all kept) that fills big LSH buckets."""
    one = [BASE, OTHER, ("A record that was rejected", "by heuristics"), ("Name a dwarf planet.", "Pluto is one."),
           ("Name a dwarf planet", "Pluto is one!"), *[square(k) for k in range(1, 25)],
           ("Explain why leaves change colour in autumn.", "As days shorten, trees stop making chlorophyll, so the green "
            "fades and the yellow and orange pigments that were there all along show through.")]
    first = make(one, quality=[0.5 + k / 1000 for k in range(len(one))], prefix="old").with_columns(
        drop_stage=pl.when(pl.col("id") == "old2").then(pl.lit("heuristics")),
        drop_reason=pl.when(pl.col("id") == "old2").then(pl.lit("refusal")))
    two = [EDITED, (OTHER[0].upper(), OTHER[1]), ("A record that was rejected", "by heuristics!"), square(7), square(31),
           ("name a DWARF planet.", "Pluto is one."), ("Brand new", "content here"), ("Brand new!", "Content here."),
           (one[-1][0].replace("Explain", "Say"), one[-1][1].replace("along", "summer long")),
           ("Give one use of a paperclip.", "It holds loose sheets of paper together."),
           ("Give one use for a paperclip.", "It holds loose sheets of paper together neatly.")]
    second = make(two, quality=[0.9 - k / 100 for k in range(len(two))], prefix="new")
    return first, second.vstack(first.filter(pl.col("id") == "old1").select(second.columns))  # old1 again: the very record


@pytest.mark.parametrize("options", [{}, {"fields": "both", "bucket_all_pairs": 4}, {"exact": False}])
def test_the_second_run_gets_the_ledger_the_parquet_index_gives(tmp_path, redis_port, options):
    cfg = shared_cfg(redis_port, **options)
    first, second = runs()
    curated1 = dedup(first, cfg)
    index = build_index(curated1, cfg)
    (tmp_path / "run1").mkdir()
    index.write_parquet(tmp_path / "run1" / INDEX_FILE)
    shared = open_shared_index(cfg)
    assert shared.insert(index, "run1") == {"where": f"127.0.0.1:{redis_port}/0", "namespace": shared.namespace,
                                             "inserted": index.height, "present": 0}
    by_parquet = dedup(second, cfg.model_copy(update={"shared_index": None}), load_previous([str(tmp_path / "run1")]))
    by_redis = dedup(second, cfg, None, shared, "run2")
    assert by_redis.select(LEDGER).equals(by_parquet.select(LEDGER))
    exact = EXACT if cfg.exact else NEAR
    assert dict(by_redis.select("id", pl.struct("drop_reason", "dup_of")).iter_rows()) == {
        "new0": {"drop_reason": SEEN, "dup_of": "old0"}, "new1": {"drop_reason": SEEN, "dup_of": "old1"},
        "old1": {"drop_reason": SEEN, "dup_of": "old1"}, "new3": {"drop_reason": SEEN, "dup_of": "old11"},
        "new5": {"drop_reason": SEEN, "dup_of": "old4"}, "new8": {"drop_reason": SEEN, "dup_of": "old29"},
        "new7": {"drop_reason": exact, "dup_of": "new6"}, "new10": {"drop_reason": NEAR, "dup_of": "new9"},
        **{k: {"drop_reason": None, "dup_of": None} for k in ("new2", "new4", "new6", "new9")}}  # new2: old2 was rejected
    both = dedup(second, cfg, load_previous([str(tmp_path / "run1")]), shared, "run2")  # Parquet and Redis together
    assert both.select(LEDGER).equals(by_parquet.select(LEDGER))


def test_a_lookup_finds_what_datasketchs_own_query_finds(redis_port):
    cfg = shared_cfg(redis_port)
    first, second = runs()
    shared = open_shared_index(cfg)
    shared.insert(build_index(dedup(first, cfg), cfg), "run1")
    sig = signed(second.filter(ALIVE).select(folded("joined")).to_series(), cfg)
    lsh = shared.lsh["joined"]
    expected = set().union(*(lsh.query(datasketch.LeanMinHash(seed=1, hashvalues=row, scheme="affine32")) for row in sig))
    assert shared.bucket_members({"joined": sig}) == sorted(k.decode() for k in expected) and len(expected) > 20
    hs = np.array([[0, 1, 2 ** 32 - 1, 256]] * 32, dtype=np.uint32).reshape(1, 128)  # zero bytes at both ends survive
    assert [keys.tolist()[0] for keys in band_keys(hs, 32)] == [lsh._H(hs[0, k * 4:(k + 1) * 4]) for k in range(32)]


def snapshot(client) -> dict:
    """Every key of the database with its whole value, to compare before and after."""
    read = {b"hash": client.hgetall, b"set": client.smembers, b"list": lambda k: client.lrange(k, 0, -1), b"string": client.get}
    return {key: read[client.type(key)](key) for key in client.scan_iter()}


def test_inserting_twice_changes_nothing(redis_port):
    cfg = shared_cfg(redis_port, fields="both")
    shared = open_shared_index(cfg)
    index = build_index(dedup(runs()[0], cfg), cfg)
    assert shared.insert(index, "run1")["inserted"] == index.height
    before = snapshot(shared.client)
    assert shared.insert(index, "run1")["inserted"] == 0 and snapshot(shared.client) == before
    dedup(runs()[1], cfg, None, shared, "run2")  # a lookup leaves nothing behind
    assert snapshot(shared.client) == before
    assert shared.insert(index.head(3), "run1")["present"] == 3 and snapshot(shared.client) == before
    assert shared.client.hlen(f"{shared.namespace}:rows") == index.height
    assert shared.client.get(f"{shared.namespace}:params").decode() == shared.params


def test_a_rerun_of_a_run_does_not_meet_itself_and_other_runs_do(tmp_path, redis_port):
    cfg = shared_cfg(redis_port)
    first = runs()[0]
    shared = open_shared_index(cfg)
    me = run_identity(tmp_path / "run1", first["id"])
    shared.insert(build_index(dedup(first, cfg), cfg), me)
    again = dedup(first, cfg, None, shared, me)
    assert again.select(LEDGER).equals(dedup(first, cfg).select(LEDGER))
    other = dedup(first, cfg, None, shared, run_identity(tmp_path / "run2", first["id"]))
    assert other.filter(pl.col("drop_reason").is_null()).height == 0 and SEEN in other["drop_reason"].to_list()
    assert me == run_identity(tmp_path / "." / "run1", first["id"].reverse())
    assert me != run_identity(tmp_path / "run1", first["id"].head(5))


def test_an_index_of_other_signature_settings_is_another_namespace(redis_port):
    shared = open_shared_index(shared_cfg(redis_port))
    assert open_shared_index(shared_cfg(redis_port, threshold=0.6)).namespace == shared.namespace
    assert open_shared_index(shared_cfg(redis_port, num_perm=64, bands=16)).namespace != shared.namespace
    assert open_shared_index(shared_cfg(redis_port, fields="both")).namespace != shared.namespace


def test_an_unreachable_server_is_one_config_error_in_preflight(redis_port):
    port = free_port()
    with pytest.raises(ConfigError, match=rf"dedup.shared_index: redis at 127.0.0.1:{port}/0 does not answer") as err:
        runner.preflight(CurationConfig(dedup={"shared_index": {"port": port, "timeout": 2}}))
    assert "\n" not in str(err.value)
    deps = runner.preflight(CurationConfig(dedup={"shared_index": {"port": redis_port}}))
    assert deps.shared_index is not None and deps.shared_index.where == f"127.0.0.1:{redis_port}/0"
    with pytest.raises(ConfigError, match="bands"):
        parse_config({"dedup": {"shared_index": {"port": redis_port}, "num_perm": 8, "bands": 1}})


def test_curate_runs_share_the_index_like_previous_runs(tmp_path, redis_port):
    """Run 1 and a rerun of it (its dedup rerun, meeting only itself), then run 2 twice: with run 1 as a previous
    run and with the shared index; the two ledgers of run 2 are the same, and run 2 adds only what is new."""
    from flows.curate import curate

    records = json.loads((ROOT / "data" / "sample" / "alpaca.json").read_text())
    (tmp_path / "one.json").write_text(json.dumps(records[:120]))
    edited = [{**r, "output": r["output"] + " That is all."} for r in records[100:110]]
    (tmp_path / "two.json").write_text(json.dumps(records[90:100] + edited + records[120:]))
    fast = {"language": {"enabled": False}, "semantic": {"threshold": None}, "category": {"prototype_similarity": None},
            "score": {"enabled": False}}
    shared = {"shared_index": {"port": redis_port, "name": "flow"}}
    config = CurationConfig.model_validate({**fast, "dedup": shared})
    one = curate(inputs=[str(tmp_path / "one.json")], out=str(tmp_path / "one"), config=config)
    assert one["shared_index"]["inserted"] == one["counts"]["curated"] > 50 and one["shared_index"]["present"] == 0
    ledger = pl.read_parquet(tmp_path / "one" / "ledger.parquet")
    rerun = curate(inputs=[str(tmp_path / "one.json")], out=str(tmp_path / "one"),
                   config=CurationConfig.model_validate({**fast, "dedup": {**shared, "batch_chars": 1 << 16}}))
    assert not next(s for s in rerun["stages"] if s["name"] == "dedup")["resumed"]
    assert pl.read_parquet(tmp_path / "one" / "ledger.parquet").select(LEDGER).equals(ledger.select(LEDGER))
    assert rerun["shared_index"] == {**one["shared_index"], "inserted": 0, "present": one["counts"]["curated"]}
    by_parquet = curate(inputs=[str(tmp_path / "two.json")], out=str(tmp_path / "two-parquet"),
                        config=CurationConfig.model_validate({**fast, "dedup": {"previous_runs": [str(tmp_path / "one")]}}))
    by_redis = curate(inputs=[str(tmp_path / "two.json")], out=str(tmp_path / "two-redis"), config=config)
    parquet, redis_ = (pl.read_parquet(tmp_path / name / "ledger.parquet") for name in ("two-parquet", "two-redis"))
    assert redis_.equals(parquet)  # every column, not only dedup's
    assert redis_.filter(pl.col("drop_reason") == SEEN).height >= 20
    assert by_redis["counts"]["curated"] == by_parquet["counts"]["curated"] == by_redis["shared_index"]["inserted"]
