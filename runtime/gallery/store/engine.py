"""What each Milvus engine takes, in one table: the differences the store has to honour between a
Milvus server, Milvus Lite 3.x and Milvus Lite 2.x, named here and nowhere else.

- A Milvus server (standalone or cluster): the reference behaviour.
- Milvus Lite 3.x (milvus-lite >= 3.0): a pure-Python engine serving gRPC from a thread of this
  process; its data in PATH.db, a folder.
- Milvus Lite 2.x (milvus-lite 2.4 / 2.5): the native Milvus engine (C++/Go) in a child process
  that pymilvus starts; its data in PATH.db, one SQLite file. pymilvus 3.0 still starts it.

docs/fleet.md ("Which Milvus Lite", "Writes") has the figures behind these choices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .address import INDEX_KINDS, StoreError, StoreURI

__all__ = ["LITE_NATIVE", "LITE_PYTHON", "SERVER", "Engine", "check_index", "check_uri", "engine_for",
           "installed_lite_version"]


@dataclass(frozen=True)
class Engine:
    name: str
    # DOUBLE fields may be null. Where not, NaN stands for "no timestamp": NaN fails every
    # comparison, so such rows never pass a --since/--until filter, as a null would not.
    nullable: bool
    # Build parameters arrive only as one JSON "params" pair (milvus_lite/adapter/grpc/translators/
    # index.py in 3.2): pymilvus 3.0 sends them flat, and Milvus Lite 3.x then silently used its own.
    json_build_params: bool
    index_kinds: tuple[str, ...]  # the vector indexes the store offers on it, of INDEX_KINDS
    # One insert request carries at most batch_bytes of rows and batch_rows rows.
    batch_bytes: int
    batch_rows: int
    index_files: str  # glob, under the .db folder, of per-segment index files it may leave half-written ("" none)
    # Collection properties are kept. Milvus Lite 2.x accepts and drops them, so the store writes the
    # fingerprint and spec into the collection's description instead (milvus.py ``_properties``).
    properties: bool = True
    # How rows are written: "upsert" where another process may add the same id between the store's
    # existence check and its write (a server shared by devices); "insert" where one process owns
    # the store, so the check (under the store's lock) rules duplicates out. Milvus Lite 2.x's upsert
    # costs CPU in proportion to the rows already held (a 10k-row add: 1.0 CPU-s at 0 rows, 3.3 at
    # 40k), its insert does not (docs/fleet.md "Writes").
    write: Literal["upsert", "insert"] = "upsert"
    # Write requests in flight at once. Milvus Lite 2.x serves them in parallel and overlaps their
    # SQLite commits: store.add of 20k x 1536, the file on disk, gave 4,866 / 5,897 / 7,208 rows/s
    # with 1 / 4 / 8 in flight (one run each, idle machine; docs/fleet.md "Writes"). Milvus Lite 3.x
    # serves from one Python thread (nothing to gain); a server: not measured, so one at a time.
    in_flight: int = 1
    db_name: re.Pattern[str] | None = None  # what the .db file's name must match, when it restricts it
    # What else "Open local milvus failed" may mean, beside another process holding the lock
    cannot_open: str = ""


SERVER = Engine("a Milvus server", nullable=True, json_build_params=False, index_kinds=INDEX_KINDS,
                # 16 MB: far under gRPC's 256 MB message cap (proxy.grpc.serverMaxRecvSize)
                batch_bytes=16 << 20, batch_rows=10_000, index_files="")
# 3.x decodes a request's floats into Python lists (~8 bytes of memory per byte sent), so 16 MB costs
# ~130 MB transient; its CPU per row is the same for 1,000 to 8,192 rows per request.
LITE_PYTHON = Engine("Milvus Lite 3.x", nullable=True, json_build_params=True, index_kinds=INDEX_KINDS,
                     batch_bytes=16 << 20, batch_rows=10_000,
                     index_files="collections/{collection}/partitions/*/indexes/*.idx")
# 2.x copies a request's column data once per row (memmove in milvus::local::schema_util, so a
# request costs rows x bytes), and fsyncs its SQLite file per request: about 1 MB per request
# balances the two (docs/fleet.md "Which Milvus Lite"). It builds no HNSW ("local mode only
# support FLAT IVF_FLAT AUTOINDEX"), and its IVF_FLAT ignores nprobe (milvus-lite 2.5.1: the same
# recall@10 for nprobe 1 to nlist, 0.075 at 100k x 1536), so it is offered FLAT only. No nullable fields.
LITE_NATIVE = Engine("Milvus Lite 2.x", nullable=False, json_build_params=False, index_kinds=("flat",),
                     batch_bytes=1 << 20, batch_rows=10_000, index_files="", properties=False, write="insert",
                     in_flight=8,
                     db_name=re.compile(r"^[A-Za-z0-9.\-_]{1,36}$"),  # milvus_lite/server.py
                     # it says the same for a file its engine cannot read; its own log lines say which
                     cannot_open=" or the file is damaged (restore it from a backup or fill a new store with "
                                 "`irreid-edge index --store`)")


def installed_lite_version() -> str | None:
    """The installed milvus-lite's version, without importing it (2.x imports pkg_resources)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("milvus-lite")
    except PackageNotFoundError:
        return None


def engine_for(uri: StoreURI, lite_version: str | None) -> Engine:
    """The engine behind ``uri``, given the installed milvus-lite version (for milvus-lite: URIs)."""
    if uri.kind != "milvus-lite":
        return SERVER
    if lite_version is None:
        raise StoreError(f"{uri.text}: Milvus Lite is not installed: `pip install milvus-lite` "
                         "(or `pip install 'irreid-edge[milvus]'`)")
    major = lite_version.split(".", 1)[0]
    return LITE_NATIVE if major.isdigit() and int(major) < 3 else LITE_PYTHON


def check_uri(engine: Engine, uri: StoreURI) -> None:
    """Refuse a .db file name ``engine`` cannot open, naming the fix (before it fails obscurely)."""
    if engine.db_name is None or uri.kind != "milvus-lite":
        return
    name = Path(uri.target).name
    if not engine.db_name.match(name):
        raise StoreError(f"{uri.text}: {engine.name} takes a .db file name of at most 36 letters, digits, "
                         f"'.', '-' or '_' ({name!r} is not); rename it")


def check_index(engine: Engine, uri: StoreURI) -> None:
    """Refuse to create a collection with an index ``engine`` does not build, listing those it does."""
    if uri.index not in engine.index_kinds:
        raise StoreError(f"{uri.text}: the store offers no {uri.index.upper()} index on {engine.name}; valid with "
                         f"it: index={', '.join(engine.index_kinds)} (Milvus Lite 3.x and a Milvus server: "
                         f"{', '.join(INDEX_KINDS)}; docs/fleet.md)")
