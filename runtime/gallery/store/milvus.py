"""A GalleryStore on Milvus through pymilvus's ``MilvusClient``: Milvus Lite (the engine embedded in
this process, data in PATH.db) or a Milvus standalone / cluster shared by a fleet of devices.

One collection per model: ``<name>_<first 16 hex of the spec fingerprint>``, whose properties hold
the full fingerprint and the spec JSON, so a collection is never searched with another model's
embeddings (the same rule as the local index file, runtime/gallery/indexer.py ``check_spec``).

Schema: ``id`` (the sha256 of the image bytes, primary key), ``vec`` (FLOAT_VECTOR, metric IP),
``path``, ``camera``, ``ts`` (DOUBLE, nullable; NaN for "no time" where the engine has no nullable
fields, Milvus Lite 2.x), ``modality``, ``device``. What differs between a Milvus server, Milvus Lite
3.x and Milvus Lite 2.x is in ``engine.py``.

Vectors are stored as the local index holds them: L2-normalised, rounded to float16, re-normalised in
float32 (runtime/gallery/index.py ``_unit_f16`` / ``as_float32``), so both stores rank the same vectors.
Searches fetch a few more candidates than asked, re-score them exactly in float64 from the stored
vectors and sort by (distance, id): results do not depend on the engine's summation order or on its
order among equal scores, and an ANN index (HNSW, IVF_FLAT) changes only which candidates come back.

Filters become Milvus boolean expressions. Strings are written as double-quoted literals with ``\\``
and ``"`` escaped (Milvus Lite 3.2 has no filter templating, ``filter_params``), and metadata with
control characters is refused at the door, so no value can change an expression's structure
(tests/runtime/test_store_milvus.py feeds it quotes, backslashes and ``" or ...`` strings).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .address import StoreError, StoreURI
from .base import MAX_LABEL_BYTES, MAX_PATH_BYTES, Entry, Filters, Hit, check_entry, check_label
from .engine import Engine, check_index, check_uri, engine_for, installed_lite_version

if TYPE_CHECKING:
    from ...spec import ModelSpec

__all__ = ["MilvusStore", "build_params", "filter_expression", "literal", "stored_rows"]

_MAX_LIMIT = 16384  # Milvus's ceiling on a search's limit (topk)
# Rows per insert request: the engine's batch_bytes / batch_rows (engine.py, docs/fleet.md "Writes").
_ID_CHUNK = 1000  # ids per get/delete request
_OUTPUT = ["path", "camera", "ts", "modality", "device"]
# ANN defaults (URI options M, efConstruction, ef, nlist, nprobe override them; docs/fleet.md has
# the recall each gives).
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF = 16, 200, 64
IVF_NLIST, IVF_NPROBE = 1024, 16


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError:
        raise StoreError("a Milvus store needs pymilvus: `pip install 'irreid-edge[milvus]'` (pymilvus + "
                         "milvus-lite), or leave --store out for the local index file") from None
    # pymilvus logs every failed RPC with a traceback before raising it; the error reaches the user
    # once, as a StoreError line, so its own log is silenced below CRITICAL.
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    logging.getLogger("milvus_lite").setLevel(logging.CRITICAL)  # the same for the engine's own tracebacks
    return pymilvus


def literal(text: str) -> str:
    """A Milvus string literal for ``text`` (double quotes; backslash and quote escaped)."""
    _check_label(text, "filter value", MAX_PATH_BYTES)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _number(x: float, what: str) -> str:
    if not math.isfinite(x):
        raise StoreError(f"{what} {x!r} is not a finite number of seconds since the epoch")
    return repr(float(x))


def filter_expression(filters: Filters | None) -> str:
    """The Milvus boolean expression of ``filters`` ("" for none). Entries without a timestamp never
    pass a time filter."""
    if filters is None or filters.is_empty():
        return ""
    parts = []
    if filters.cameras is not None:
        parts.append(f"camera in [{', '.join(literal(c) for c in filters.cameras)}]")
    if filters.devices is not None:
        parts.append(f"device in [{', '.join(literal(d) for d in filters.devices)}]")
    if filters.since is not None:
        parts.append(f"ts >= {_number(filters.since, '--since')}")
    if filters.until is not None:
        parts.append(f"ts <= {_number(filters.until, '--until')}")
    return " and ".join(f"({p})" for p in parts)


def _check_label(text: str, what: str, max_bytes: int) -> None:
    try:
        check_label(text, what, max_bytes)
    except ValueError as e:
        raise StoreError(str(e)) from None


def _is_sha256(text: object) -> bool:
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _check_entry(e: Entry) -> None:
    if not _is_sha256(e.id):
        raise StoreError(f"entry id {e.id!r} is not a sha256 hex digest of the image bytes")
    try:
        check_entry(e)
    except ValueError as err:
        raise StoreError(f"{e.path or e.id}: {err}") from None


def stored_rows(embeddings: np.ndarray) -> np.ndarray:
    """(N, D) float32 as the local index ranks them: normalised, float16-rounded, re-normalised."""
    x = np.asarray(embeddings, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x = x.astype(np.float16).astype(np.float32)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))


def _collection_name(name: str, spec: ModelSpec) -> str:
    return f"{name}_{spec.fingerprint()[:16]}"


def _spec_line(spec_json: str | None, fp: str) -> str:
    try:
        s = json.loads(spec_json or "{}")
        return f"{s.get('name')}/{s.get('modality')}/{s.get('precision')} (fingerprint {fp[:12]})"
    except (ValueError, AttributeError):
        return f"fingerprint {fp[:12]}"


class MilvusStore:
    """The gallery of one model in one Milvus collection. Open with ``runtime.gallery.store.open_store``."""

    def __init__(self, client: Any, uri: StoreURI, spec: ModelSpec, collection: str, index: str,
                 engine: Engine) -> None:
        self.client, self.uri, self.spec, self.collection, self.index = client, uri, spec, collection, index
        self.engine = engine
        self._write_lock = threading.Lock()  # add / remove: existence check and write as one step
        self.rescore_margin = 8  # extra candidates fetched beyond top_k (see the module docstring)
        self._added = 0  # rows added since opening: close() seals them (see close)

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, uri: StoreURI, spec: ModelSpec, *, create: bool = False, token: str = "") -> MilvusStore:
        pm = _pymilvus()
        engine = engine_for(uri, installed_lite_version())
        check_uri(engine, uri)
        client = _connect(pm, uri, token, engine)
        try:
            collection = _collection_name(uri.name, spec)
            if client.has_collection(collection):
                index = _check_existing(client, uri, spec, collection)
                # a reopened collection is "released"; loading a loaded one is a no-op
                _load(client, uri, collection, engine)
            elif create:
                try:
                    index = _create(pm, client, uri, spec, collection, engine)
                except StoreError:
                    # another device created it between has_collection and create: use theirs
                    if not client.has_collection(collection):
                        raise
                    index = _check_existing(client, uri, spec, collection)
                    _load(client, uri, collection, engine)
            else:
                raise StoreError(_missing_message(client, uri, spec))
        except BaseException as e:
            client.close()
            _release_lite(uri)
            if isinstance(e, Exception) and not isinstance(e, StoreError):  # the engine's own: one line
                raise StoreError(f"{uri.text}: Milvus cannot open the gallery ({_one_line(e)}); if a file of the "
                                 "store is damaged, restore the store from a backup or fill a new one with "
                                 "`irreid-edge index --store` (docs/fleet.md)") from e
            raise
        return cls(client, uri, spec, collection, index, engine)

    # -- the GalleryStore protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        rows = self._call("count", self.client.query, self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the store already holds.

        Anything but a sha256 hex digest cannot be an entry's id (``add`` refuses it) and is dropped
        before the lookup: pymilvus writes the ids of ``get``/``delete`` into a filter expression
        unescaped (pymilvus/milvus_client/base.py ``_pack_pks_expr``), so ``' or id != '`` would
        otherwise select, or delete, every row."""
        found: set[str] = set()
        ids = [i for i in dict.fromkeys(ids) if _is_sha256(i)]
        for s in range(0, len(ids), _ID_CHUNK):
            rows = self._call("get", self.client.get, self.collection, ids=ids[s:s + _ID_CHUNK], output_fields=["id"])
            found.update(str(r["id"]) for r in rows)
        return found

    def add(self, embeddings: np.ndarray, entries: Sequence[Entry]) -> int:
        emb = np.asarray(embeddings)
        if emb.ndim != 2 or emb.shape[0] != len(entries):
            raise StoreError(f"embeddings {emb.shape} do not match {len(entries)} entries")
        if emb.shape[1] != self.spec.embedding_dim:
            raise StoreError(f"embedding dim {emb.shape[1]} != the model's {self.spec.embedding_dim}")
        for e in entries:
            _check_entry(e)
        first = {e.id: i for i, e in reversed(list(enumerate(entries)))}  # the first of duplicate ids
        # Milvus does not enforce unique primary keys on insert: the engine's ``write`` is upsert
        # wherever another process may add the same image between the check and the write (two
        # devices on a server), and insert only where this process owns the store (engine.py); the
        # lock makes check-then-write one step for this process's threads (serve).
        write = getattr(self.client, self.engine.write)
        with self._write_lock:
            have = self.existing(list(first))
            rows = [i for i in sorted(first.values()) if entries[i].id not in have]
            if not rows:
                return 0
            vecs = stored_rows(emb[rows])

            def send(span: tuple[int, int]) -> int:
                lo, hi = span
                data = [_row(entries[rows[j]], vecs[j], self.engine.nullable) for j in range(lo, hi)]
                # one request per batch, no flush: the write is acknowledged once it is in
                # Milvus's write-ahead log (see close for what that guarantees)
                self._call(self.engine.write, write, self.collection, data)
                return hi - lo

            spans = _batches([entries[i] for i in rows], emb.shape[1], self.engine.batch_bytes, self.engine.batch_rows)
            for n in _in_flight(send, spans, self.engine.in_flight):
                self._added += n
        return len(rows)

    def remove(self, ids: Sequence[str]) -> int:
        with self._write_lock:
            have = sorted(self.existing(ids))
            for s in range(0, len(have), _ID_CHUNK):
                self._call("delete", self.client.delete, self.collection, ids=have[s:s + _ID_CHUNK])
        return len(have)

    def get(self, entry_id: str) -> Entry | None:
        """The entry of this id, or None (``serve``'s thumbnails and its one-write-path check)."""
        if not _is_sha256(entry_id):
            return None
        rows = self._call("get", self.client.get, self.collection, ids=[entry_id], output_fields=_OUTPUT)
        return _entry(entry_id, rows[0]) if rows else None

    def search(self, queries: np.ndarray, top_k: int, filters: Filters | None = None) -> list[list[Hit]]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.spec.embedding_dim:
            raise StoreError(f"probe embeddings have dim {q.shape[1]} but the gallery has "
                             f"{self.spec.embedding_dim}; use the same model for both")
        if top_k < 1 or q.shape[0] == 0:
            return [[] for _ in range(q.shape[0])]
        fetch = min(top_k + self.rescore_margin, _MAX_LIMIT)
        expr = filter_expression(filters)
        out: list[list[Hit]] = []
        for s in range(0, q.shape[0], 256):  # bounded request size
            res = self._call("search", self.client.search, self.collection, data=list(q[s:s + 256]), limit=fetch,
                             filter=expr, output_fields=[*_OUTPUT, "vec"],
                             search_params={"metric_type": "IP", "params": self._search_params(fetch)})
            out += [_rescore(q[s + i], hits, top_k) for i, hits in enumerate(res)]
        return out

    def close(self) -> None:
        """Milvus acknowledges a write once its write-ahead log holds it, so no accepted write waits
        on this. What that means in Milvus Lite 3.2 (milvus_lite/storage/wal.py, engine/collection.py):
        ``upsert`` returns after the rows are appended to an Arrow WAL file and that file is flushed
        to the operating system, not fsynced; so an acknowledged write survives the process being
        killed (tests/runtime/test_serve_store.py). It does not promise more: Milvus Lite fsyncs its
        manifest but neither the WAL as it grows nor the Parquet files a flush writes, so a power cut
        or kernel crash can lose recent writes, and a flush per call would not change that. A Milvus
        server acknowledges once its log (message queue) has the write. Milvus Lite 2.x commits each
        request to its SQLite file with fdatasync (four per request, seen with strace), so its
        acknowledged writes survive a power cut too. ``add`` therefore flushes nothing per call;
        Milvus Lite 3.x seals rows on its own when 128 MB of them are pending.

        After adds, close flushes once: that seals the new rows into segments that get the vector
        index, where unsealed ("growing") rows are searched by brute force (slow in Milvus Lite;
        docs/fleet.md). Closing also stops Milvus Lite's engine."""
        if self.client is None:
            return
        try:
            self.flush()
        finally:
            client, self.client = self.client, None
            client.close()
            _release_lite(self.uri)

    def flush(self) -> None:
        """Seal the rows added since the last flush (a long-lived writer such as serve may call it
        after a burst of adds; Milvus also seals on its own as segments fill)."""
        if self._added:
            self._call("flush", self.client.flush, self.collection)
            self._added = 0

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> dict[str, Any]:
        return {"store": self.uri.text, "kind": self.uri.kind, "collection": self.collection, "index": self.index,
                "count": len(self)}

    # -- internals -------------------------------------------------------------------------------
    def _search_params(self, fetch: int) -> dict[str, int]:
        o = self.uri.options
        if self.index == "hnsw":
            return {"ef": max(o.get("ef", HNSW_EF), fetch)}
        if self.index == "ivf_flat":
            return {"nprobe": o.get("nprobe", IVF_NPROBE)}
        return {}

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.client is None:
            raise StoreError(f"{self.uri.text}: the store is closed")
        try:
            return fn(*args, **kwargs)
        except StoreError:
            raise
        except Exception as e:  # pymilvus raises MilvusException and gRPC errors; one line for the CLI
            raise StoreError(f"{self.uri.text}: Milvus {what} failed: {_one_line(e)}") from e


def _one_line(e: BaseException) -> str:
    msg = getattr(e, "message", None) or str(e) or type(e).__name__
    return " ".join(str(msg).split())[:300]


def _row(e: Entry, vec: np.ndarray, nullable: bool) -> dict[str, Any]:
    ts = e.timestamp if e.timestamp is not None or nullable else math.nan  # NaN: no time (engine.py)
    return {"id": e.id, "vec": vec, "path": e.path, "camera": e.camera, "ts": ts,
            "modality": e.modality, "device": e.device}


def _row_bytes(e: Entry, dim: int) -> int:
    """About what one row weighs in an insert request: the vector, the id, the timestamp, the strings."""
    text = len(e.path.encode()) + len(e.camera.encode()) + len(e.modality.encode()) + len(e.device.encode())
    return 4 * dim + 64 + 8 + text + 16


def _batches(entries: Sequence[Entry], dim: int, max_bytes: int, max_rows: int) -> list[tuple[int, int]]:
    """[start, end) ranges of ``entries`` to send one request each: at most ``max_bytes`` of rows
    (one row alone may exceed it) and ``max_rows`` rows."""
    out: list[tuple[int, int]] = []
    start, size = 0, 0
    for i, e in enumerate(entries):
        b = _row_bytes(e, dim)
        if i > start and (size + b > max_bytes or i - start >= max_rows):
            out.append((start, i))
            start, size = i, 0
        size += b
    if start < len(entries):
        out.append((start, len(entries)))
    return out


def _in_flight(send: Callable[[tuple[int, int]], int], spans: list[tuple[int, int]], width: int) -> Iterator[int]:
    """``send(span)`` for each span, ``width`` requests at a time, results in order; the first
    failure is raised and the requests not yet sent are dropped."""
    if width <= 1 or len(spans) <= 1:
        yield from map(send, spans)
        return
    pool = ThreadPoolExecutor(width, thread_name_prefix="irreid-milvus-write")
    try:
        yield from pool.map(send, spans)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _rescore(q: np.ndarray, hits: Sequence[Any], top_k: int) -> list[Hit]:
    if not hits:
        return []
    ids = [str(h["id"]) for h in hits]
    g = np.asarray([h["entity"]["vec"] for h in hits], dtype=np.float64)
    d = np.clip(1.0 - g @ q.astype(np.float64), 0.0, 2.0)
    order = sorted(range(len(ids)), key=lambda i: (d[i], ids[i]))[:top_k]
    out = []
    for rank, i in enumerate(order, start=1):
        out.append(Hit(rank=rank, distance=float(d[i]), entry=_entry(ids[i], hits[i]["entity"])))
    return out


def _entry(entry_id: str, ent: dict[str, Any]) -> Entry:
    ts = ent.get("ts")
    t = float(ts) if ts is not None else math.nan  # a NaN stored by an older version: unknown time
    return Entry(id=entry_id, path=ent.get("path", ""), camera=ent.get("camera", ""),
                 timestamp=t if math.isfinite(t) else None, modality=ent.get("modality", ""),
                 device=ent.get("device", ""))


# Milvus Lite runs inside this process, one engine per .db folder, started by the first client and
# stopped only at interpreter exit (milvus_lite/server_manager.py). Stopping it when our last
# client closes makes a close final: the engine's last flush, the background index builds it
# starts after a flush, and its lock are all done when close() returns. Without this, a process
# stopped (or killed) in the seconds after close could leave a half-written vector index file,
# which the next process fails to load ("No data left in file": issue 26).
_LITE_USERS: dict[str, int] = {}


def _release_lite(uri: StoreURI) -> None:
    if uri.kind != "milvus-lite":
        return
    n = _LITE_USERS.get(uri.target, 1) - 1
    if n > 0:
        _LITE_USERS[uri.target] = n
        return
    _LITE_USERS.pop(uri.target, None)
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # another Milvus Lite layout: it stops at exit, as before
        return
    server_manager_instance.release_server(uri.target)


def _load(client: Any, uri: StoreURI, collection: str, engine: Engine) -> None:
    """Load a collection. A Milvus Lite collection whose vector index files cannot be read (a
    process killed while writing them: they are written in place, not atomically) is loaded again
    after those files are removed; they are derived from the stored rows and are rebuilt."""
    try:
        client.load_collection(collection)
        return
    except Exception as e:
        first = e
    sidecars = _lite_index_files(uri, collection, engine)
    if not sidecars:
        raise StoreError(f"{uri.text}: Milvus cannot load collection {collection}: {_one_line(first)}") from first
    for f in sidecars:
        f.unlink(missing_ok=True)
    try:
        client.load_collection(collection)
    except Exception as e:
        raise StoreError(f"{uri.text}: Milvus cannot load collection {collection} ({_one_line(e)}), even with its "
                         "vector index files rebuilt: its data is damaged; restore the .db folder from a backup "
                         "or fill a new store with `irreid-edge index --store`") from e
    print(f"irreid-edge: {uri.text}: rebuilt {len(sidecars)} unreadable Milvus Lite index file(s) of "
          f"{collection} ({_one_line(first)})", file=sys.stderr)


def _lite_index_files(uri: StoreURI, collection: str, engine: Engine) -> list[Path]:
    """The per-segment index files of ``collection`` an engine may leave half-written (Milvus Lite
    3.x's; none for a server or Milvus Lite 2.x, whose one SQLite file is written transactionally)."""
    if uri.kind != "milvus-lite" or not engine.index_files:
        return []
    return sorted(Path(uri.target).glob(engine.index_files.format(collection=collection)))


def _connect(pm: Any, uri: StoreURI, token: str, engine: Engine) -> Any:
    if uri.kind == "milvus-lite":
        import os

        folder = os.path.dirname(uri.target)
        if not os.path.isdir(folder):
            raise StoreError(f"{uri.text}: folder {folder} does not exist; create it or pick another path")
    t0 = time.monotonic()
    try:
        client = pm.MilvusClient(uri=uri.target, token=token, timeout=15)
        if uri.kind == "milvus-lite":
            _LITE_USERS[uri.target] = _LITE_USERS.get(uri.target, 0) + 1
        return client
    except Exception as e:
        text = _one_line(e)
        cause = e.__context__ or e.__cause__
        if uri.kind == "milvus-lite" and ("lock" in text.lower() or "lock" in str(cause).lower()
                                          or "Open local milvus failed" in text):
            raise StoreError(f"{uri.text}: {engine.name} could not open {uri.target} ({text}); another process "
                             f"may hold it (Milvus Lite serves one process at a time){engine.cannot_open}: stop that process, "
                             "or share the gallery through a Milvus server (milvus://HOST:19530, docs/fleet.md)") from None
        raise StoreError(f"{uri.text}: cannot connect to Milvus at {uri.target} after "
                         f"{time.monotonic() - t0:.0f}s ({text}); is the server running and reachable? "
                         "(docs/fleet.md has the docker compose / helm links)") from None


_DESCRIPTION_TAG = "irreid "  # a collection description that carries the properties (engine.py ``properties``)


def _properties(client: Any, collection: str) -> dict[str, str]:
    """The collection's properties, or those its description carries (Milvus Lite 2.x keeps no properties)."""
    desc = client.describe_collection(collection)
    props = {str(k): str(v) for k, v in (desc.get("properties") or {}).items()}
    text = str(desc.get("description") or "")
    if "irreid.fingerprint" not in props and text.startswith(_DESCRIPTION_TAG):
        try:
            carried = json.loads(text[len(_DESCRIPTION_TAG):])
        except ValueError:
            carried = None
        if isinstance(carried, dict):
            props.update({str(k): str(v) for k, v in carried.items()})
    return props


def _check_existing(client: Any, uri: StoreURI, spec: ModelSpec, collection: str) -> str:
    props = _properties(client, collection)
    fp = props.get("irreid.fingerprint", "")
    if fp != spec.fingerprint():
        raise StoreError(
            f"{uri.text}: collection {collection} was made with another model ({_spec_line(props.get('irreid.spec'), fp)}) "
            f"than this run ({spec.name}/{spec.modality}/{spec.precision}, fingerprint {spec.fingerprint()[:12]}); "
            "pass the model it was built with, or give this gallery another name (milvus://HOST/NAME or "
            "?collection=NAME)")
    return props.get("irreid.index", "flat")


def _galleries(client: Any, name: str) -> list[str]:
    out = []
    for c in sorted(client.list_collections()):
        if c.startswith(f"{name}_"):
            props = _properties(client, c)
            if "irreid.fingerprint" in props:
                out.append(_spec_line(props.get("irreid.spec"), props["irreid.fingerprint"]))
    return out


def _missing_message(client: Any, uri: StoreURI, spec: ModelSpec) -> str:
    held = _galleries(client, uri.name)
    what = (f"it holds galleries of {', '.join(held)}; pass the same --model/--gallery-modality/--precision "
            "as the `index --store` run that filled it, or" if held else "it is empty;")
    return (f"{uri.text}: no gallery for this model ({spec.name}/{spec.modality}/{spec.precision}, fingerprint "
            f"{spec.fingerprint()[:12]}); {what} fill it with `irreid-edge index --store {uri.text} --gallery DIR`")


def _version() -> str:
    """The installed irreid-edge version (not ``runtime.__version__``: importing the package from
    here would close an import circle through runtime.api, tests/test_import_graph.py)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("irreid-edge")
    except PackageNotFoundError:
        return "unknown"


def build_params(uri: StoreURI) -> dict[str, int]:
    """The vector index's build parameters: the URI's options over the defaults (docs/fleet.md)."""
    o = uri.options
    if uri.index == "hnsw":
        return {"M": o.get("M", HNSW_M), "efConstruction": o.get("efConstruction", HNSW_EF_CONSTRUCTION)}
    if uri.index == "ivf_flat":
        return {"nlist": o.get("nlist", IVF_NLIST)}
    return {}


def _create(pm: Any, client: Any, uri: StoreURI, spec: ModelSpec, collection: str, engine: Engine) -> str:
    check_index(engine, uri)
    dt = pm.DataType
    props = {"irreid.fingerprint": spec.fingerprint(), "irreid.spec": spec.to_json(), "irreid.index": uri.index,
             "irreid.created_by": f"irreid-edge {_version()}"}
    description = "" if engine.properties else _DESCRIPTION_TAG + json.dumps(props, sort_keys=True)
    schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=description)
    schema.add_field("id", dt.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("vec", dt.FLOAT_VECTOR, dim=spec.embedding_dim)
    schema.add_field("path", dt.VARCHAR, max_length=MAX_PATH_BYTES)
    schema.add_field("camera", dt.VARCHAR, max_length=MAX_LABEL_BYTES)
    schema.add_field("ts", dt.DOUBLE, nullable=engine.nullable)
    schema.add_field("modality", dt.VARCHAR, max_length=MAX_LABEL_BYTES)
    schema.add_field("device", dt.VARCHAR, max_length=MAX_LABEL_BYTES)
    params = build_params(uri)
    index_params = client.prepare_index_params()
    # Milvus Lite 3.x reads build parameters only as one JSON "params" pair (engine.py); pymilvus
    # flattens one level of ``params``, so {"params": params} arrives as that pair.
    sent = {"params": params} if engine.json_build_params and params else params
    index_params.add_index(field_name="vec", index_type=uri.index.upper(), metric_type="IP", params=sent)
    try:
        # Strong consistency: a device that just added an image finds it (re-adding stays idempotent).
        client.create_collection(collection, schema=schema, index_params=index_params, consistency_level="Strong",
                                 properties=props)
    except Exception as e:
        raise StoreError(f"{uri.text}: cannot create collection {collection}: {_one_line(e)}") from e
    return uri.index
