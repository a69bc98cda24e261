"""One encoder interface over every backend: ``embed((N,3,H,W) raw 0-255 float32) -> (N,D)``.

``open_encoder`` takes an exported model folder (runtime.model_dir layout) or a single foreign
``.onnx`` described by ONNX metadata or a ``<file>.spec.json`` sidecar (``irreid-edge spec``), picks
a backend in the order TensorRT -> ONNX Runtime TensorRT EP / CUDA EP -> ONNX Runtime CPU (printed
once, with the precision), and wraps it so that every encoder validates its input against the spec,
normalises for foreign models, splits (or pads) batches to what the backend accepts and returns
L2-normalised float32 embeddings. Heavy imports happen here lazily, never at module import.

``precision="auto"`` (the default everywhere): the fastest TensorRT engine already built for this
device (int8 > fp16 > fp32); without one, ONNX Runtime's best provider with the fp16 graph on a
GPU provider (fp32 when not exported) and the fp32 graph on the CPU (int8-cpu only when asked: it
trades accuracy). An explicit precision whose graph was not exported is an error, never a silent
fp32 run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .backends import Runner
from .base.choices import (
    ENGINE_PRECISION_ORDER,
    INFERENCE_BACKEND_CHOICES,
    INFERENCE_BACKENDS,
    PRECISION_CHOICES,
)
from .base.fileio import file_sha256, open_regular
from .model_dir import model_file, read_model_dir_specs
from .preprocess import normalize
from .spec import ModelSpec, SpecError, check_spec_agreement, read_spec_json, spec_from_onnx_metadata

__all__ = [
    "Encoder",
    "check_spec_agreement",
    "choose_backend",
    "onnx_spec",
    "open_encoder",
    "read_onnx_metadata",
    "resolve_onnx",
    "sidecar_spec_path",
]

_ORT_PROVIDER_OF = {"onnxruntime-tensorrt": "TensorrtExecutionProvider",
                    "onnxruntime-cuda": "CUDAExecutionProvider",
                    "onnxruntime-cpu": "CPUExecutionProvider"}
# ORT-TensorRT EP before ORT-CUDA (same GPU, faster kernels), CPU last.
_ORT_ORDER = INFERENCE_BACKENDS[1:]
_printed: set[str] = set()
#: the install lines of docs/install.md; the core package depends on no ONNX Runtime build
ORT_INSTALL_HINT = ("install the ONNX Runtime for this machine: `pip install \".[cpu]\"` on a PC, `\".[gpu]\"` with an "
                    "NVIDIA GPU, on a Jetson NVIDIA's onnxruntime-gpu wheel (docs/install.md)")


class Encoder(Protocol):
    spec: ModelSpec        # onnx_sha256 is the sha256 of the file actually loaded
    backend: str           # one of runtime.base.choices.INFERENCE_BACKENDS
    max_batch: int | None  # None = unlimited (embed splits larger batches itself anyway)

    def embed(self, batch: np.ndarray) -> np.ndarray:  # (N,3,H,W) float32 0-255 -> (N,D) float32
        ...


# -- backend choice (pure) ----------------------------------------------------------------------
def choose_backend(requested: str, trt_problem: str | None, ort_providers: Sequence[str]) -> tuple[str, str]:
    """(backend, why) for a request. ``trt_problem`` is None when a usable TensorRT engine exists,
    else why TensorRT cannot run (not installed, no engine built, ...). An explicit request that
    cannot be met raises ValueError naming what is missing."""
    if requested not in INFERENCE_BACKEND_CHOICES:
        raise ValueError(f"backend {requested!r} is invalid; valid values: {', '.join(INFERENCE_BACKEND_CHOICES)}")
    ort_usable = [b for b in _ORT_ORDER if _ORT_PROVIDER_OF[b] in ort_providers]
    if requested == "tensorrt":
        if trt_problem is not None:
            raise ValueError(f"backend tensorrt is unavailable: {trt_problem}")
        return "tensorrt", "requested"
    if requested in _ORT_PROVIDER_OF:
        if not ort_providers:
            raise ValueError(f"backend {requested} is unavailable: ONNX Runtime is not installed: {ORT_INSTALL_HINT}")
        if requested not in ort_usable:
            raise ValueError(f"backend {requested} is unavailable: ONNX Runtime here has {', '.join(ort_providers)}; "
                             f"install onnxruntime-gpu for CUDA (docs/install.md)")
        return requested, "requested"
    if requested == "auto" and trt_problem is None:
        return "tensorrt", "TensorRT engine found"
    if not ort_usable:
        raise ValueError(f"no backend available ({trt_problem or 'TensorRT not requested'}) and ONNX Runtime is not "
                         f"installed: {ORT_INSTALL_HINT}")
    why = [] if requested == "onnxruntime" else [trt_problem or "TensorRT unavailable"]
    if ort_usable[0] == "onnxruntime-cpu":
        why.append("no CUDA provider")
    return ort_usable[0], "; ".join(why) or "requested"


def _announce(backend: str, precision: str, why: str, verbose: bool) -> None:
    line = f"irreid-edge: backend {backend}, precision {precision} ({why})"
    if verbose and line not in _printed:
        _printed.add(line)
        print(line, file=sys.stderr)


# -- which file, which spec ---------------------------------------------------------------------
def sidecar_spec_path(onnx_path: str | os.PathLike[str]) -> Path:
    return Path(f"{onnx_path}.spec.json")


def _fallbacks(precision: str, target: str) -> list[tuple[str, str]]:
    """(precision, target) candidates, best first: a missing int8-cpu graph can still run the
    TensorRT-flavoured int8 graph on ORT's CPU provider. Never the other way round (TensorRT's
    parser rejects the CPU graph's uint8 asymmetric Q/DQ), and never another precision."""
    chain = [(precision, target)]
    if precision == "int8" and target == "cpu":
        chain.append(("int8", "trt"))
    return chain


def resolve_onnx(model_dir: str | os.PathLike[str], modality: str, precision: str, target: str,
                 fallback: bool = True, verbose: bool = True) -> tuple[Path, str]:
    """The ONNX file for (modality, precision, target) and the precision it holds; a precision
    that was not exported is refused with the export command that makes it."""
    wanted = model_file(model_dir, modality, precision, target)
    for prec, tgt in _fallbacks(precision, target) if fallback else [(precision, target)]:
        path = model_file(model_dir, modality, prec, tgt)
        if path.exists() and not path.is_file():  # a FIFO or a folder: say so, do not call it missing
            open_regular(path).close()  # raises NotRegularFileError naming what it is
        if path.is_file():
            if path != wanted and verbose:
                print(f"irreid-edge: {wanted.name} not found in {model_dir}; using {path.name} ({prec})", file=sys.stderr)
            return path, prec
    flag = {"fp32": "", "fp16": " --fp16", "int8": " --int8 --calib DIR"}[precision]
    raise SpecError(f"{wanted}: not found; export it with `python -m export.onnx{flag}`"
                    + ("" if precision == "fp32" else " or use --precision auto"))


def _auto_ort_graph(model_dir: Path, modality: str, backend: str) -> tuple[Path, str]:
    """--precision auto on ONNX Runtime: fp16 on a GPU provider when exported, else fp32."""
    target = "trt" if backend == "onnxruntime-tensorrt" else "cpu"
    order = ("fp32",) if backend == "onnxruntime-cpu" else ("fp16", "fp32")
    for prec in order:
        path = model_file(model_dir, modality, prec, target)
        if path.is_file():
            return path, prec
    return resolve_onnx(model_dir, modality, "fp32", target, fallback=False)


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """An ONNX file's metadata_props, with the onnx package when present, else through ONNX Runtime."""
    try:
        import onnx
    except ImportError:
        from .backends.ort import load_session

        return dict(load_session(Path(path)).get_modelmeta().custom_metadata_map)
    from google.protobuf.message import DecodeError

    from .base.fileio import open_regular

    try:
        with open_regular(path) as f:
            # from bytes: onnx.load(f) takes os.path.abspath(f.name), and a file opened from a
            # descriptor (open_regular) has an int name (TypeError); external data is not needed
            model = onnx.load_model_from_string(f.read())
    except FileNotFoundError:
        raise SpecError(f"{path}: not found; pass an exported .onnx file") from None
    except DecodeError as e:  # not an ONNX file (issue 17 item 9)
        raise SpecError(f"{path}: not an ONNX model ({e}); re-export it or pass a valid .onnx") from None
    return {p.key: p.value for p in model.metadata_props}


def onnx_spec(path: Path, metadata: Mapping[str, str] | None, folder: ModelSpec | None,
              precision: str) -> ModelSpec:
    """The spec of the ONNX actually loaded, with its sha256: the folder's spec.json checked against
    the embedded one, or for a foreign file its ``.spec.json`` sidecar, else its metadata."""
    sha = file_sha256(path)
    if folder is not None:
        spec = folder.replace(precision=precision)
        if metadata and "irreid.spec" in metadata:
            embedded = spec_from_onnx_metadata(metadata, str(path))
            check_spec_agreement(folder, embedded, str(path))
            spec = embedded
        return spec.replace(onnx_sha256=sha)
    side = sidecar_spec_path(path)
    if side.is_file():
        spec = read_spec_json(side)
        if spec.onnx_sha256 not in (None, sha):
            raise SpecError(f"{side}: describes another file (sha256 differs from {path.name}); rewrite it with "
                            f"`irreid-edge spec --onnx {path} --height {spec.input_height} --width {spec.input_width}`")
        return spec.replace(onnx_sha256=sha)
    return spec_from_onnx_metadata(metadata or {}, str(path)).replace(onnx_sha256=sha)


# -- the encoder --------------------------------------------------------------------------------
@dataclass
class _Encoder:
    spec: ModelSpec
    backend: str
    runner: Runner
    max_batch: int | None

    def embed(self, batch: np.ndarray) -> np.ndarray:
        x = self._check(batch)
        d = self.spec.embedding_dim
        if x.shape[0] == 0:
            return np.zeros((0, d), np.float32)
        x = normalize(x, self.spec)
        step = self.max_batch or x.shape[0]
        parts = [self._run(x[i:i + step]) for i in range(0, x.shape[0], step)]
        out = np.concatenate(parts, axis=0)
        if out.shape != (x.shape[0], d):
            raise SpecError(f"{self.spec.name}: the model returned shape {out.shape}, the spec says "
                            f"({x.shape[0]}, {d}); fix embedding_dim in its spec")
        if not self.spec.l2_normalized:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32, copy=False)

    def _check(self, batch: np.ndarray) -> np.ndarray:
        want = self.spec.input_shape
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.ndim != 4 \
                or batch.shape[1:] != want:
            got = (f"{batch.dtype} {tuple(batch.shape)}" if isinstance(batch, np.ndarray)
                   else type(batch).__name__)
            raise ValueError(f"embed: expected float32 (N, {', '.join(map(str, want))}) raw 0-255 pixels for "
                             f"{self.spec.name}/{self.spec.modality}, got {got}; use runtime.preprocess.load_batch")
        return np.ascontiguousarray(batch)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        static = self.runner.static_batch
        n = chunk.shape[0]
        if static is None or n == static:
            return self.runner.run(chunk)
        # a fixed-batch foreign graph: pad the last chunk with zeros and drop their rows
        pad = np.zeros((static - n, *chunk.shape[1:]), np.float32)  # (static-n, 3, H, W)
        return self.runner.run(np.concatenate([chunk, pad]))[:n]


def _model_kind(model: str | os.PathLike[str]) -> tuple[Path, bool]:
    path = Path(model)
    if path.is_dir():
        return path, True
    if path.is_file() and path.suffix == ".onnx":
        return path, False
    if path.exists():
        raise SpecError(f"{path}: not a model folder nor an .onnx file; pass an export folder or an ONNX model")
    raise SpecError(f"{path}: not found; pass an export folder (python -m export.onnx) or an .onnx file")


def _open_trt(path: Path, is_dir: bool, modality: str, precision: str, folder: ModelSpec | None,
              backend: str, dla_core: int | None = None) -> tuple[Runner, ModelSpec, str] | str:
    """(runner, spec, precision) of the fastest usable engine for ``precision`` (``auto``: int8 >
    fp16 > fp32), or why TensorRT cannot run. CUDA that fails to initialise (a cuda-python too new
    for the driver, ...) and, unless TensorRT was asked for by name with a precision, an engine
    built for another setup (or torn by an interrupted build) are reasons to fall back, not crashes;
    the reason, with its rebuild command, is what the backend line prints."""
    from .backends.cuda_mem import CudaUnavailableError
    from .backends.engine import build_command, built_engines
    from .backends.trt import open_trt_encoder_runner, trt_unavailable_reason

    reason = trt_unavailable_reason()
    if reason is not None:
        return reason
    wanted = ENGINE_PRECISION_ORDER if precision == "auto" else (precision,)
    # per precision, the GPU engine first, then a DLA one (engine.built_engines); dla_core: that core's only
    built = [(p, f) for p in wanted for f in built_engines(path, modality, p, is_dir, dla_core)]
    if not built:
        hint = build_command(path, modality, precision, dla_core=dla_core)  # `build --precision auto`: the fastest graph
        where = "" if dla_core is None else f" for DLA core {dla_core}"
        return f"no {'' if precision == 'auto' else precision + ' '}engine built{where}; run `{hint}`"
    skipped = []
    for prec, engine_file in built:
        try:
            runner, spec = open_trt_encoder_runner(path, is_dir, modality, prec, folder, engine_file)
        except CudaUnavailableError as e:
            return str(e)
        except SpecError as e:  # built for another setup, or a torn / malformed sidecar: rebuild
            if backend == "tensorrt" and precision != "auto":
                raise
            skipped.append(str(e))
            continue
        return runner, spec, prec
    return "; ".join(skipped)


def _ort_graph(path: Path, is_dir: bool, modality: str, precision: str, backend: str,
               verbose: bool) -> tuple[Path, str]:
    """The graph ONNX Runtime runs: TensorRT's EP gets the TensorRT-flavoured graph (its parser
    rejects the CPU int8 graph's uint8 Q/DQ), the CUDA and CPU providers the CPU-flavoured one."""
    if not is_dir:
        return path, "fp32" if precision == "auto" else precision
    if precision == "auto":
        return _auto_ort_graph(path, modality, backend)
    target = "trt" if backend == "onnxruntime-tensorrt" else "cpu"
    return resolve_onnx(path, modality, precision, target, verbose=verbose)


def open_encoder(model: str | os.PathLike[str], modality: str = "ir", precision: str = "auto",
                 backend: str = "auto", verbose: bool = True, threads: int | None = None,
                 dla_core: int | None = None) -> Encoder:
    """Open the encoder for ``modality`` from an export folder, or a foreign ``.onnx`` file.
    The precision that runs is ``encoder.spec.precision``; the backend ``encoder.backend``.
    ``dla_core``: run the engine built for that DLA core (default: the GPU engine, else a DLA one)."""
    from .backends.ort import OrtRunner, available_providers

    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision {precision!r} is invalid; valid values: {', '.join(PRECISION_CHOICES)}")
    path, is_dir = _model_kind(model)
    folder = read_model_dir_specs(path).get(modality) if is_dir else None
    if is_dir and folder is None:
        raise SpecError(f"{path}/spec.json: no {modality!r} encoder; valid: "
                        f"{', '.join(read_model_dir_specs(path))}")
    trt = _open_trt(path, is_dir, modality, precision, folder, backend, dla_core) \
        if backend in ("auto", "tensorrt") else "not requested"
    chosen, why = choose_backend(backend, trt if isinstance(trt, str) else None, available_providers())
    if not isinstance(trt, str):  # choose_backend picks TensorRT whenever an engine opened
        runner, spec, prec = trt
        core = getattr(runner, "dla_core", None)
        _announce(chosen, prec, why if core is None else f"{why}; DLA core {core}", verbose)
        return _Encoder(spec=spec, backend=chosen, runner=runner, max_batch=runner.max_batch)
    onnx_path, prec = _ort_graph(path, is_dir, modality, precision, chosen, verbose)
    cache = (path if is_dir else path.parent) / "engines" / "ort-trt-cache"
    ort_runner = OrtRunner(onnx_path, chosen, threads=threads, cache_dir=cache, precision=prec)
    spec = onnx_spec(onnx_path, ort_runner.metadata, folder, prec)
    if not is_dir:
        # one foreign graph serves both modalities (IR replicated to 3 channels): its spec says
        # which one this encoder embeds, so a gallery index refuses mixing them up.
        spec = spec.replace(modality=modality)
    _announce(ort_runner.backend, spec.precision, why, verbose)
    return _Encoder(spec=spec, backend=ort_runner.backend, runner=ort_runner, max_batch=ort_runner.max_batch)
