"""Base utilities every other runtime folder may import: file I/O (atomic, durable, no symlink
surprises), user-facing errors, progress bars, option choices and hand-written ONNX bytes.

Nothing here imports from another runtime folder (tests/test_import_graph.py checks it).
"""
