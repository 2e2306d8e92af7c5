"""The shared cross-run dedup index in Redis: runs on several machines do not admit each other's records.

Each compared field has a datasketch MinHashLSH on Redis storage (the bands and rows of `dedup`) holding
the signatures of every record the runs curated, keyed by id; beside it a hash holds each record's index
row (the columns `build_index` writes) as one JSON line. A run looks up the buckets of its alive rows'
bands, fetches the rows of what it meets and dedups against them as against an earlier run's Parquet
index; its export adds what it curated. Keys, under NS = "<name>:<digest of the signature settings>"
(only signatures of one setting can share buckets):

  NS:lsh:<field>_bucket_<band>..., NS:lsh:<field>_keys   datasketch's MinHashLSH storage
  NS:rows         hash: id -> index row (JSON)
  NS:run:<run>    set: the ids that run curated, which a rerun of the same run does not count as earlier
  NS:params       the signature settings, for whoever reads the database

A row is written after its buckets, so a row present means its buckets are: an interrupted insert is
redone whole next time, and a lookup skips bucket members whose row is not there yet (another machine's
export in flight). Keys and rows are plain bytes and JSON: nothing read from the server is unpickled.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from schemas.config.base import ConfigError
from schemas.config.dedup import SharedIndexConfig

if TYPE_CHECKING:
    import redis
    from datasketch import MinHashLSH

SCHEME = "affine32"  # datasketch's name for the permutations pipeline.dedup.minhash computes
CHUNK = 10_000  # commands per Redis round trip
REPLY_TIMEOUT = 300.0  # seconds a reply may take once connected (a chunk takes well under one)
SCRATCH_TTL = 600  # seconds a lookup's scratch set outlives a client that died mid-lookup


def band_keys(sig: np.ndarray, bands: int) -> list[np.ndarray]:
    """Per band, every row's bucket key as datasketch's MinHashLSH makes it (the band's values, big-endian
    bytes), as one numpy array of raw bytes per band (`.tolist()` gives `bytes`)."""
    rows = sig.shape[1] // bands
    big = sig[:, :bands * rows].astype(">u4")
    return [np.ascontiguousarray(big[:, k * rows:(k + 1) * rows]).view(f"V{4 * rows}").ravel() for k in range(bands)]


def run_identity(run_dir: str | Path, ids: pl.Series) -> str:
    """Who a run is: its directory and the ids of its ledger. A rerun of a run (same directory and input,
    other settings) does not meet the records it added itself; new input in the same directory is a new run."""
    text = f"{Path(run_dir).resolve()}\n{ids.sort().str.join(chr(10)).item() if len(ids) else ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class SharedIndex:
    """A connected shared index for one signature setting (see the module doc)."""

    where: str  # host:port/db, for messages
    namespace: str
    params: str  # signature_params of the runs that share it
    fields: tuple[str, ...]
    num_perm: int
    seed: int
    client: redis.Redis
    lsh: dict[str, MinHashLSH]

    @classmethod
    def open(cls, cfg: SharedIndexConfig, params: str, fields: list[str], num_perm: int, bands: int, seed: int) -> SharedIndex:
        """Connect and ping; one ConfigError line when the extra is missing or the server does not answer."""
        try:
            import redis
            from datasketch import MinHashLSH
        except ImportError as err:
            raise ConfigError(f"dedup.shared_index needs the redis extra (pip install -e '.[redis]'): {err}") from None
        conn = {"host": cfg.host, "port": cfg.port, "db": cfg.db, "socket_connect_timeout": cfg.timeout,
                "socket_timeout": REPLY_TIMEOUT}
        namespace = f"{cfg.name}:{hashlib.sha256(f'{params}|{bands}'.encode()).hexdigest()[:12]}"
        lsh = {f: MinHashLSH(num_perm=num_perm, params=(bands, num_perm // bands), prepickle=False,
                             storage_config={"type": "redis", "basename": f"{namespace}:lsh:{f}".encode(), "redis": conn})
               for f in fields}
        index = cls(f"{cfg.host}:{cfg.port}/{cfg.db}", namespace, params, tuple(fields), num_perm, seed, redis.Redis(**conn), lsh)
        index.check()
        return index

    def check(self) -> None:
        """Ping the server: one ConfigError line when it does not answer (down, wrong port, needs a password)."""
        import redis

        try:
            self.client.ping()
        except redis.RedisError as err:
            raise ConfigError(f"dedup.shared_index: redis at {self.where} does not answer: {str(err).splitlines()[0]}") from None

    def _key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def _pipelined(self, calls: list[tuple]) -> list:
        """(command, *args) calls sent CHUNK per round trip, their replies in order."""
        replies = []
        for lo in range(0, len(calls), CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for command, *args in calls[lo:lo + CHUNK]:
                getattr(pipe, command)(*args)
            replies += pipe.execute()
        return replies

    def _chunked(self, command: str, key: str, items: list) -> list:
        """One multi-item command (HMGET, SMISMEMBER) per CHUNK items, the replies concatenated."""
        return [r for lo in range(0, len(items), CHUNK) for r in getattr(self.client, command)(key, items[lo:lo + CHUNK])]

    def bucket_members(self, sigs: dict[str, np.ndarray]) -> list[str]:
        """Ids of the indexed records that share a whole band with any row of `sigs` (field -> signatures), sorted.
        The server unions the buckets, CHUNK per scratch set and then those sets, and sends each id once."""
        buckets = [table.redis_key(key) for field, sig in sigs.items()
                   for table, keys in zip(self.lsh[field].hashtables, band_keys(sig, len(self.lsh[field].hashtables)))
                   for key in dict.fromkeys(keys.tolist())]
        scratch = [self._key("lookup", uuid.uuid4().hex, str(k)) for k in range(0, len(buckets), CHUNK)]
        if not scratch:
            return []
        unions = [("sunionstore", key, buckets[lo:lo + CHUNK]) for key, lo in zip(scratch, range(0, len(buckets), CHUNK))]
        expire = [("expire", key, SCRATCH_TTL) for key in scratch]  # should this client die before the delete
        found = self._pipelined([*unions, *expire, ("sunion", scratch), ("delete", *scratch)])[-2]
        return sorted(k.decode() for k in found)

    def candidates(self, sigs: dict[str, np.ndarray], run: str | None = None) -> pl.DataFrame | None:
        """Index rows of the records sharing a band with `sigs`, sorted by id, less those `run` added itself;
        None when there are none. The dedup stage passes them on as an earlier run's index."""
        ids = self.bucket_members(sigs)
        if run and ids:
            ids = [i for i, own in zip(ids, self._chunked("smismember", self._key("run", run), ids)) if not own]
        lines = [row for row in self._chunked("hmget", self._key("rows"), ids) if row is not None]
        if not lines:
            return None
        schema = {"id": pl.String, "instruction": pl.String, "response": pl.String, **{f"key_{f}": pl.String for f in self.fields},
                  **{f"signature_{f}": pl.List(pl.UInt32) for f in self.fields}, "params": pl.String}
        rows = pl.read_ndjson(io.BytesIO(b"\n".join(lines)), schema=schema)
        return rows.with_columns(pl.col(f"signature_{f}").cast(pl.Array(pl.UInt32, self.num_perm)) for f in self.fields).sort("id")

    def insert(self, index: pl.DataFrame, run: str) -> dict:
        """Add a run's index rows (build_index's frame): buckets, then rows, then the run's ids. An id already
        there is left as it is, so inserting twice changes nothing. Returns what was done, for the manifest."""
        from datasketch import LeanMinHash

        ids = index["id"].to_list()
        present = np.array(self._pipelined([("hexists", self._key("rows"), i) for i in ids]), dtype=bool)
        new = index.filter(pl.Series(~present)) if len(ids) else index
        if new.height:
            for field, lsh in self.lsh.items():
                with lsh.insertion_session() as session:
                    for key, values in zip(new["id"].to_list(), new[f"signature_{field}"].to_numpy()):
                        session.insert(key.encode(), LeanMinHash(seed=self.seed, hashvalues=values, scheme=SCHEME), check_duplication=False)
            lines = new.write_ndjson().rstrip("\n").split("\n")  # JSON escapes newlines inside strings: one line per row
            self._pipelined([("hsetnx", self._key("rows"), i, line) for i, line in zip(new["id"].to_list(), lines, strict=True)])
        self._pipelined([("sadd", self._key("run", run), *ids[lo:lo + CHUNK]) for lo in range(0, len(ids), CHUNK)])
        self.client.set(self._key("params"), self.params, nx=True)
        return {"where": self.where, "namespace": self.namespace, "inserted": new.height, "present": int(present.sum())}
