"""Galleries: scanning a gallery folder (``scan``), the index file (``index``), keeping it up to
date (``indexer``) and the stores that hold gallery rows (``store``: the local index, Milvus).
Imports runtime.base, runtime.search and the model spec; never the backends or the commands.
"""
