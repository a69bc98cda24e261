"""Every choice list the commands and libraries offer, in one place (issue 19 item 8).

Imported by the parsers (`irreid-edge`, `python -m train.evaluate`), by the spec validation and by
the code that acts on a choice, so a new precision or backend is added here once. Nothing here
imports anything: `--help` stays instant.
"""

from __future__ import annotations

__all__ = [
    "ENGINE_PRECISION_ORDER",
    "INFERENCE_BACKENDS",
    "INFERENCE_BACKEND_CHOICES",
    "MODALITIES",
    "MODALITY_CHOICES",
    "PRECISIONS",
    "PRECISION_CHOICES",
    "SEARCH_BACKENDS",
]

#: the two encoders of a cross-modal model
MODALITIES = ("rgb", "ir")
#: MODALITIES plus "auto" (IR when an image's three channels are equal)
MODALITY_CHOICES = (*MODALITIES, "auto")

#: the graph / engine precisions an export and a build produce
PRECISIONS = ("fp32", "fp16", "int8")
#: what --precision accepts: "auto" = the fastest engine built for this device, else ONNX Runtime's pick
PRECISION_CHOICES = ("auto", *PRECISIONS)
#: --precision auto tries built engines in this order (fastest first)
ENGINE_PRECISION_ORDER = ("int8", "fp16", "fp32")

#: what runs an encoder (runtime.encoder); not to be confused with SEARCH_BACKENDS
INFERENCE_BACKENDS = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")
#: what --backend accepts: "onnxruntime" = the best ONNX Runtime provider present
INFERENCE_BACKEND_CHOICES = ("auto", "tensorrt", "onnxruntime", *INFERENCE_BACKENDS[1:])

#: exact nearest-neighbour search over a gallery (runtime.search.rank)
SEARCH_BACKENDS = ("auto", "numpy", "faiss", "int8")
