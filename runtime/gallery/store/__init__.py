"""Gallery stores: where gallery embeddings live and are searched.

The default store is the local index file beside a gallery folder (``runtime.gallery.index``); a fleet shares
one gallery in a vector database (Milvus). Every store implements ``GalleryStore`` (``base.py``), so the
CLI, the Python API and ``irreid-edge serve`` talk to any of them the same way.
"""

from .base import Entry, Filters, GalleryStore, Hit
from .uri import StoreError, open_store

__all__ = ["Entry", "Filters", "GalleryStore", "Hit", "StoreError", "open_store"]
