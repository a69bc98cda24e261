"""Store URIs: where a gallery lives (parsed and checked here; ``uri.open_store`` opens them).

    milvus-lite:PATH.db[?collection=NAME&index=...]   Milvus Lite, the real engine embedded in this
                                                       process (one process at a time per file)
    milvus://HOST[:19530][/NAME][?index=...]           a Milvus standalone or cluster (plain gRPC)
    milvus+https://HOST[:443][/NAME][?index=...]       the same over TLS

NAME (default ``irreid``) names the gallery; each model gets its own collection ``NAME_<fingerprint>``
(the fingerprint of the gallery encoder's ModelSpec), so galleries of two models never mix.
The token of a server that needs one is read from ``$IRREID_MILVUS_TOKEN`` ("user:password" or an
API key), never from the URI, so it does not end up in shell history or logs.

Query options: ``index=flat`` (exact, the default) | ``hnsw`` | ``ivf_flat`` decides the vector
index of a collection when it is created; ``ef=`` (HNSW) and ``nprobe=`` (IVF) tune its searches;
``M=``, ``efConstruction=`` and ``nlist=`` its build. An existing collection keeps the index it was
created with.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

__all__ = ["INDEX_KINDS", "TOKEN_ENV", "StoreError", "StoreURI", "is_store_uri", "parse_store_uri"]

TOKEN_ENV = "IRREID_MILVUS_TOKEN"
INDEX_KINDS = ("flat", "hnsw", "ivf_flat")
_INT_OPTIONS = ("ef", "nprobe", "M", "efConstruction", "nlist")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,150}$")  # Milvus collection-name rules, with room for _<fp>
_SCHEMES = ("milvus-lite:", "milvus://", "milvus+https://")


class StoreError(ValueError):
    """A store cannot be opened or used; the message names the store and the fix."""


@dataclass(frozen=True)
class StoreURI:
    kind: str  # "milvus-lite" | "milvus"
    target: str  # the MilvusClient uri: a .db path or http(s)://host:port
    name: str = "irreid"
    index: str = "flat"
    options: dict[str, int] = field(default_factory=dict)
    text: str = ""  # the URI as given (for messages)


def is_store_uri(text: str) -> bool:
    return text.startswith(_SCHEMES)


def _options(uri: str, query: str) -> tuple[str, str | None, dict[str, int]]:
    index, name, opts = "flat", None, {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key == "index":
            if value.lower() not in INDEX_KINDS:
                raise StoreError(f"{uri}: index={value!r} is invalid; valid values: {', '.join(INDEX_KINDS)}")
            index = value.lower()
        elif key == "collection":
            name = value
        elif key in _INT_OPTIONS:
            if not value.isdigit() or int(value) < 1:
                raise StoreError(f"{uri}: {key}={value!r} must be a positive integer")
            opts[key] = int(value)
        else:
            raise StoreError(f"{uri}: unknown option {key!r}; valid: index, collection, {', '.join(_INT_OPTIONS)}")
    return index, name, opts


def _check_name(uri: str, name: str) -> str:
    if not _NAME_RE.match(name):
        raise StoreError(f"{uri}: gallery name {name!r} is invalid; use letters, digits and '_' "
                         "(not starting with a digit), at most 150 characters")
    return name


def parse_store_uri(uri: str) -> StoreURI:
    """Parse (and validate) a store URI; raises StoreError naming the fix."""
    if uri.startswith("milvus-lite:"):
        rest = uri[len("milvus-lite:"):]
        path, _, query = rest.partition("?")
        if path.startswith("//"):  # milvus-lite:///abs/path.db reads as milvus-lite:/abs/path.db
            path = path[2:]
        if not path.endswith(".db"):
            raise StoreError(f"{uri}: a Milvus Lite store is a file whose name ends in .db, e.g. "
                             "milvus-lite:gallery.db")
        index, name, opts = _options(uri, query)
        return StoreURI("milvus-lite", os.path.abspath(path), _check_name(uri, name or "irreid"), index, opts, uri)
    for scheme, http in (("milvus://", "http"), ("milvus+https://", "https")):
        if uri.startswith(scheme):
            parts = urlsplit(uri.replace(scheme, f"{http}://", 1))
            if not parts.hostname:
                raise StoreError(f"{uri}: no host; write {scheme}HOST:19530[/NAME]")
            try:
                port = parts.port or (19530 if http == "http" else 443)
            except ValueError:
                raise StoreError(f"{uri}: the port is not a number; write {scheme}HOST:19530[/NAME]") from None
            if parts.username or parts.password:
                raise StoreError(f"{uri}: do not put credentials in the URI; set ${TOKEN_ENV} instead")
            index, qname, opts = _options(uri, parts.query)
            path_name = parts.path.strip("/")
            name = _check_name(uri, qname or path_name or "irreid")
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            return StoreURI("milvus", f"{http}://{host}:{port}", name, index, opts, uri)
    raise StoreError(f"{uri}: unknown store; use milvus-lite:PATH.db or milvus://HOST:19530[/NAME] "
                     "(or leave --store out for the local index file)")
