"""``open_store(uri, spec)``: open the gallery of one model in the store a URI names.

The URI forms, options and the token variable are described in ``address.py`` and docs/fleet.md.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .address import INDEX_KINDS, TOKEN_ENV, StoreError, StoreURI, is_store_uri, parse_store_uri

if TYPE_CHECKING:
    from ...spec import ModelSpec
    from .base import GalleryStore

__all__ = ["INDEX_KINDS", "TOKEN_ENV", "StoreError", "StoreURI", "is_store_uri", "open_store", "parse_store_uri"]


def open_store(uri: str, spec: ModelSpec, *, create: bool = False, token: str | None = None,
               **kwargs: Any) -> GalleryStore:
    """Open the gallery of ``spec``'s model in the store at ``uri``.

    ``create``: make the collection when this model has none yet (``index``); otherwise a missing
    collection is an error naming the models the store does hold (``match``, ``serve``).
    Milvus needs ``pip install 'irreid-edge[milvus]'`` (pymilvus + milvus-lite).
    """
    parsed = parse_store_uri(uri)
    from .milvus import MilvusStore

    tok = token if token is not None else os.environ.get(TOKEN_ENV, "")
    return MilvusStore.open(parsed, spec, create=create, token=tok, **kwargs)
