"""irreid-edge runtime: what ships to the device. numpy, pillow, onnxruntime; TensorRT lazily. Never torch."""

from .spec import ModelSpec, SpecError

__version__ = "0.1.0"
__all__ = ["ModelSpec", "SpecError", "__version__"]
