"""One encoder interface over every backend: ``embed((N,3,H,W) raw 0-255 float32) -> (N,D)``.

``open_encoder`` takes an exported model folder (runtime.model_dir layout) or a single foreign
``.onnx`` described by ONNX metadata or a ``<file>.spec.json`` sidecar (``irreid-edge spec``), picks
a backend in the order TensorRT -> ONNX Runtime TensorRT EP / CUDA EP -> ONNX Runtime CPU (printed
once), and wraps it so that every encoder validates its input against the spec, normalises for
foreign models, splits (or pads) batches to what the backend accepts and returns L2-normalised
float32 embeddings. Heavy imports happen here lazily, never at module import.
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
from .fileio import file_sha256, open_regular
from .model_dir import model_file, read_model_dir_specs
from .preprocess import normalize
from .spec import ModelSpec, SpecError, check_spec_agreement, read_spec_json, spec_from_onnx_metadata

__all__ = [
    "BACKENDS",
    "BACKEND_CHOICES",
    "Encoder",
    "check_spec_agreement",
    "choose_backend",
    "onnx_spec",
    "open_encoder",
    "read_onnx_metadata",
    "resolve_onnx",
    "sidecar_spec_path",
]

BACKENDS = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")
#: what a user may ask for; "onnxruntime" = the best ONNX Runtime provider present
BACKEND_CHOICES = ("auto", "tensorrt", "onnxruntime", *BACKENDS[1:])
_ORT_PROVIDER_OF = {"onnxruntime-tensorrt": "TensorrtExecutionProvider",
                    "onnxruntime-cuda": "CUDAExecutionProvider",
                    "onnxruntime-cpu": "CPUExecutionProvider"}
# ORT-TensorRT EP before ORT-CUDA (same GPU, faster kernels), CPU last.
_ORT_ORDER = ("onnxruntime-tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")
_printed: set[str] = set()


class Encoder(Protocol):
    spec: ModelSpec        # onnx_sha256 is the sha256 of the file actually loaded
    backend: str           # one of BACKENDS
    max_batch: int | None  # None = unlimited (embed splits larger batches itself anyway)

    def embed(self, batch: np.ndarray) -> np.ndarray:  # (N,3,H,W) float32 0-255 -> (N,D) float32
        ...


# -- backend choice (pure) ----------------------------------------------------------------------
def choose_backend(requested: str, trt_problem: str | None, ort_providers: Sequence[str]) -> tuple[str, str]:
    """(backend, why) for a request. ``trt_problem`` is None when a usable TensorRT engine exists,
    else why TensorRT cannot run (not installed, no engine built, ...). An explicit request that
    cannot be met raises ValueError naming what is missing."""
    if requested not in BACKEND_CHOICES:
        raise ValueError(f"backend {requested!r} is invalid; valid values: {', '.join(BACKEND_CHOICES)}")
    ort_usable = [b for b in _ORT_ORDER if _ORT_PROVIDER_OF[b] in ort_providers]
    if requested == "tensorrt":
        if trt_problem is not None:
            raise ValueError(f"backend tensorrt is unavailable: {trt_problem}")
        return "tensorrt", "requested"
    if requested in _ORT_PROVIDER_OF:
        if requested not in ort_usable:
            raise ValueError(f"backend {requested} is unavailable: ONNX Runtime here has "
                             f"{', '.join(ort_providers) or 'no providers'}; install onnxruntime-gpu for CUDA")
        return requested, "requested"
    if requested == "auto" and trt_problem is None:
        return "tensorrt", "TensorRT engine found"
    if not ort_usable:
        raise ValueError("no backend available: onnxruntime is not installed (pip install onnxruntime)")
    why = [] if requested == "onnxruntime" else [trt_problem or "TensorRT unavailable"]
    if ort_usable[0] == "onnxruntime-cpu":
        why.append("no CUDA provider")
    return ort_usable[0], "; ".join(why) or "requested"


def _announce(backend: str, why: str, verbose: bool) -> None:
    line = f"irreid-edge: backend {backend} ({why})"
    if verbose and line not in _printed:
        _printed.add(line)
        print(line, file=sys.stderr)


# -- which file, which spec ---------------------------------------------------------------------
def sidecar_spec_path(onnx_path: str | os.PathLike[str]) -> Path:
    return Path(f"{onnx_path}.spec.json")


def _fallbacks(precision: str, target: str) -> list[tuple[str, str]]:
    """(precision, target) candidates, best first: a missing int8-cpu graph can still run the
    TensorRT-flavoured int8 graph on ORT; anything missing falls back to fp32."""
    chain = [(precision, target)]
    if precision == "int8" and target == "cpu":
        chain.append(("int8", "trt"))
    if precision != "fp32":
        chain.append(("fp32", target))
    return chain


def resolve_onnx(model_dir: str | os.PathLike[str], modality: str, precision: str, target: str,
                 fallback: bool = True, verbose: bool = True) -> tuple[Path, str]:
    """The ONNX file for (modality, precision, target) and the precision it really holds."""
    wanted = model_file(model_dir, modality, precision, target)
    for prec, tgt in _fallbacks(precision, target) if fallback else [(precision, target)]:
        path = model_file(model_dir, modality, prec, tgt)
        if path.exists() and not path.is_file():  # a FIFO or a folder: say so, do not call it missing
            open_regular(path).close()  # raises NotRegularFileError naming what it is
        if path.is_file():
            if path != wanted and verbose:
                print(f"irreid-edge: {wanted.name} not found in {model_dir}; using {path.name} ({prec}); "
                      f"export with `python -m export.onnx --{precision}` to get it", file=sys.stderr)
            return path, prec
    raise SpecError(f"{wanted}: not found; export it with `python -m export.onnx"
                    f"{'' if precision == 'fp32' else ' --' + precision}`")


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """An ONNX file's metadata_props, with the onnx package when present, else through ONNX Runtime."""
    try:
        import onnx
    except ImportError:
        from .backends.ort import load_session

        return dict(load_session(Path(path)).get_modelmeta().custom_metadata_map)
    from google.protobuf.message import DecodeError

    from .fileio import open_regular

    try:
        with open_regular(path) as f:
            model = onnx.load(f, load_external_data=False)
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


def _trt_problem(path: Path, is_dir: bool, modality: str, precision: str) -> str | None:
    from .backends.trt import trt_unavailable_reason
    from .engine import build_command, engine_path

    reason = trt_unavailable_reason()
    if reason is not None:
        return reason
    engine = engine_path(path, modality, precision, is_dir)
    if not engine.is_file():
        return f"no {precision} engine built; run `{build_command(path, modality, precision)}`"
    return None


def open_encoder(model: str | os.PathLike[str], modality: str = "ir", precision: str = "fp32",
                 backend: str = "auto", verbose: bool = True, threads: int | None = None) -> Encoder:
    """Open the encoder for ``modality`` from an export folder, or a foreign ``.onnx`` file."""
    from .backends.ort import OrtRunner, available_providers

    path, is_dir = _model_kind(model)
    folder = read_model_dir_specs(path).get(modality) if is_dir else None
    if is_dir and folder is None:
        raise SpecError(f"{path}/spec.json: no {modality!r} encoder; valid: "
                        f"{', '.join(read_model_dir_specs(path))}")
    needs_trt = backend in ("auto", "tensorrt")
    trt_problem = _trt_problem(path, is_dir, modality, precision) if needs_trt else "not requested"
    chosen, why = choose_backend(backend, trt_problem, available_providers())
    if chosen == "tensorrt":
        from .backends.trt import open_trt_encoder_runner

        runner, spec = open_trt_encoder_runner(path, is_dir, modality, precision, folder)
        _announce(chosen, why, verbose)
        return _Encoder(spec=spec, backend=chosen, runner=runner, max_batch=runner.max_batch)
    if is_dir:
        onnx_path, prec = resolve_onnx(path, modality, precision, "cpu", verbose=verbose)
    else:
        onnx_path, prec = path, precision
    cache = (path if is_dir else path.parent) / "engines" / "ort-trt-cache"
    ort_runner = OrtRunner(onnx_path, chosen, threads=threads, cache_dir=cache, precision=prec)
    spec = onnx_spec(onnx_path, ort_runner.metadata, folder, prec)
    if not is_dir:
        # one foreign graph serves both modalities (IR replicated to 3 channels): its spec says
        # which one this encoder embeds, so a gallery index refuses mixing them up.
        spec = spec.replace(modality=modality)
    _announce(ort_runner.backend, why, verbose)
    return _Encoder(spec=spec, backend=ort_runner.backend, runner=ort_runner, max_batch=ort_runner.max_batch)
