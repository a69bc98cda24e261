"""irreid-edge runtime: what ships to the device. numpy, pillow, onnxruntime; TensorRT lazily. Never torch.

The Python API (``runtime.api``: ``open_encoder``, ``open_gallery``, ...) is also reachable from here,
imported on first use so that ``import runtime`` (and ``irreid-edge --help``) stays instant.
"""

from typing import Any

from .spec import ModelSpec, SpecError

__version__ = "0.1.0"
_API = ("open_encoder", "open_gallery", "Gallery", "ImageEncoder", "LocalStore", "Entry", "Filters", "Hit")
__all__ = ["ModelSpec", "SpecError", "__version__", *_API]


def __getattr__(name: str) -> Any:  # PEP 562: runtime.open_encoder -> runtime.api.open_encoder, lazily
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
