"""ONNX Runtime backend: TensorRT EP, CUDA EP or CPU, one InferenceSession per graph."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .onnx_graph import graph_input

__all__ = ["ORT_BACKENDS", "OrtRunner", "TrtProfile", "available_providers", "load_session", "trt_profile"]

#: backend name -> the execution providers asked for, best first (ORT falls back along the list)
ORT_BACKENDS: dict[str, tuple[str, ...]] = {
    "onnxruntime-tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "onnxruntime-cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "onnxruntime-cpu": ("CPUExecutionProvider",),
}
_PROVIDER_TO_BACKEND = {
    "TensorrtExecutionProvider": "onnxruntime-tensorrt",
    "CUDAExecutionProvider": "onnxruntime-cuda",
    "CPUExecutionProvider": "onnxruntime-cpu",
}


def available_providers() -> list[str]:
    """ONNX Runtime's providers in this environment ([] when onnxruntime is not importable)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


@dataclass(frozen=True)
class TrtProfile:
    input_name: str
    chw: tuple[int, int, int]
    batches: tuple[int, int, int]  # min / opt / max

    def options(self) -> dict[str, str]:
        """ONNX Runtime TensorRT EP options ``trt_profile_{min,opt,max}_shapes``, each
        "input:NxCxHxW" (ONNX Runtime docs, TensorRT Execution Provider, "Explicit shape range")."""
        chw = "x".join(map(str, self.chw))
        return {f"trt_profile_{which}_shapes": f"{self.input_name}:{b}x{chw}"
                for which, b in zip(("min", "opt", "max"), self.batches)}


def trt_profile(path: Path) -> TrtProfile | None:
    """The optimisation profile ONNX Runtime's TensorRT provider gets for ``path``: the batch range
    `irreid-edge build` uses by default (1 / 8 / runtime.backends.engine.DEFAULT_MAX_BATCH), or the graph's
    own batch when it is fixed. None when the input's C, H, W are not static (a foreign graph with
    dynamic sizes: the provider then sizes its engine from the first batch, as before)."""
    from .engine import DEFAULT_MAX_BATCH, profile_batches

    found = graph_input(path)
    if found is None:
        return None
    name, shape = found
    if len(shape) != 4 or min(shape[1:]) <= 0 or any(c in name for c in ",:"):
        return None  # ',' and ':' separate the provider's "name:NxCxHxW,..." lists
    fixed = shape[0] if shape[0] > 0 else None
    return TrtProfile(name, (shape[1], shape[2], shape[3]), profile_batches(DEFAULT_MAX_BATCH, static_batch=fixed))


def _provider_options(provider: str, cache_dir: Path | None, precision: str,
                      profile: TrtProfile | None = None) -> dict[str, Any]:
    if provider != "TensorrtExecutionProvider":
        return {}
    # Without an explicit profile the provider sizes its engine from the first batch it sees and
    # rebuilds whenever a batch falls outside it (minutes on a Jetson: `match` at batch 1, then
    # `index` at 32); with one, it builds once for the whole range and the runner splits above max.
    out: dict[str, Any] = dict(profile.options()) if profile is not None else {}
    if cache_dir is None:
        return out
    # The TensorRT EP builds engines when the session starts: cache them (and the timing cache) so
    # only the first start on a device pays for the build. Precision lives in the graph; the flags
    # only let a weakly typed build pick the graph's own precisions: fp16 for an fp16 graph, int8
    # and fp16 for the TensorRT int8 graph (Q/DQ pairs with fp16 around them, runtime/model_dir.py).
    return {
        **out,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
        "trt_fp16_enable": precision in ("fp16", "int8"),
        "trt_int8_enable": precision == "int8",
    }


class OrtRunner:
    """One ONNX Runtime session; ``backend`` says which provider actually runs it."""

    def __init__(self, path: str | os.PathLike[str], backend: str = "onnxruntime-cpu",
                 threads: int | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 precision: str = "fp32") -> None:
        import onnxruntime as ort

        if backend not in ORT_BACKENDS:
            raise ValueError(f"ONNX Runtime backend {backend!r} is invalid; valid values: {', '.join(ORT_BACKENDS)}")
        available = set(ort.get_available_providers())
        wanted = [p for p in ORT_BACKENDS[backend] if p in available]
        if not wanted or wanted[0] != ORT_BACKENDS[backend][0]:
            raise ValueError(f"{backend}: ONNX Runtime here has no {ORT_BACKENDS[backend][0]} "
                             f"(available: {', '.join(sorted(available))}); install onnxruntime-gpu or use "
                             f"--backend onnxruntime-cpu")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        # No spin-waiting after a run. A device embeds and searches in one process (match, serve,
        # watch): an encoder's pool workers, left spinning on the cores after the embedding, took
        # them from the gallery search that follows (serve's warm 1M top-10: 160 against 100 ms on
        # 2 cores; bench/gallery_scale.py) and from the other modality's encoder.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        cache = Path(cache_dir) if cache_dir is not None else None
        if cache is not None and wanted[0] == "TensorrtExecutionProvider":
            cache.mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        profile = trt_profile(self.path) if wanted[0] == "TensorrtExecutionProvider" else None
        providers = [(p, _provider_options(p, cache, precision, profile)) for p in wanted]
        self.session = load_session(self.path, opts, providers)
        # ORT falls back silently when a provider's libraries are missing: report what really runs.
        self.backend = _PROVIDER_TO_BACKEND.get(self.session.get_providers()[0], "onnxruntime-cpu")
        inp = self.session.get_inputs()[0]
        self.input_name: str = inp.name
        self.input_shape: tuple[Any, ...] = tuple(inp.shape)
        self.input_type: str = inp.type
        self.output_name: str = self.session.get_outputs()[0].name
        self.output_shape: tuple[Any, ...] = tuple(self.session.get_outputs()[0].shape)
        batch_dim = self.input_shape[0] if self.input_shape else None
        # A foreign graph exported with a fixed batch (often 1) only accepts exactly that size.
        self.static_batch: int | None = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.max_batch: int | None = self.static_batch
        if profile is not None and self.backend == "onnxruntime-tensorrt":
            self.max_batch = profile.batches[2]  # larger batches are split, never a rebuild

    @property
    def metadata(self) -> Mapping[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.input_type == "tensor(float16)":
            batch = batch.astype(np.float16)
        try:
            out = self.session.run([self.output_name], {self.input_name: batch})[0]
        except Exception as e:
            if not _is_ort_error(e):
                raise
            # e.g. "Got invalid dimensions": a spec whose size disagrees with a foreign graph (issue 17 item 9)
            raise ValueError(f"{self.path}: the graph refused a {tuple(batch.shape)} input ({_first_line(e)}); its "
                             f"spec disagrees with the graph: rewrite it with `irreid-edge spec --onnx {self.path} "
                             "--height H --width W`, or re-export the model") from None
        return np.asarray(out, dtype=np.float32)


def _is_ort_error(e: BaseException) -> bool:
    """ONNX Runtime's pybind errors (InvalidProtobuf, InvalidArgument, Fail, ...) derive from
    Exception only; they are known by their module."""
    return type(e).__module__.startswith("onnxruntime")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_session(path: Path, opts: Any = None, providers: Any = None) -> Any:
    """An InferenceSession for ``path``, every failure a one-line ValueError naming the file.

    The file is checked to be a regular file first: ONNX Runtime opens the path itself, and a FIFO
    there would block it forever (issue 17 item 7).
    """
    import onnxruntime as ort

    from ..base.fileio import open_regular

    try:
        open_regular(path).close()
    except FileNotFoundError:
        raise ValueError(f"{path}: not found; export the model with `python -m export.onnx`") from None
    except PermissionError:
        raise ValueError(f"{path}: permission denied; make it readable (chmod +r)") from None
    try:
        return ort.InferenceSession(str(path), sess_options=opts,
                                    providers=providers or ["CPUExecutionProvider"])
    except Exception as e:
        if not _is_ort_error(e):
            raise
        raise ValueError(f"{path}: not an ONNX model ONNX Runtime can load ({type(e).__name__}: "
                         f"{_first_line(e)}); re-export it with `python -m export.onnx`, or pass a valid .onnx") from None
