"""irreid-edge runtime: what ships to the device. numpy, pillow, onnxruntime; TensorRT lazily. Never torch.

The Python API is ``runtime.api`` (``open_encoder``, ``open_gallery``, ...; docs/api.md). It is not
re-exported here: every runtime module imports ``__version__`` from this package, so importing the
API here, even lazily, would close an import circle (tests/test_import_graph.py).
"""

from .spec import ModelSpec, SpecError

__version__ = "0.1.0"
__all__ = ["ModelSpec", "SpecError", "__version__"]
