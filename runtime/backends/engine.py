"""TensorRT engine files: where they live, the key that says where they may run, the sidecar.

An engine is built on the device that runs it (shared/DESIGN.md "Contracts"). Beside every
``<name>.engine`` a ``<name>.engine.json`` sidecar records the key (ONNX sha256, TensorRT version,
GPU name + compute capability + SM count + memory, the L4T release on a Jetson, precision, batch
profile, DLA core), the engine's own sha256, build facts and
the ModelSpec. Loading compares the key with the device and the ONNX now present and refuses a
mismatch with the exact rebuild command. Everything here is pure (no TensorRT, no CUDA) and is
tested on a CPU with fabricated device descriptions.

The build itself is a chain of small stages (Polygraphy's loader style) in runtime.backends.trt_build:
parse ONNX -> configure (flags, workspace, profile, timing cache) -> build -> save (``write_engine``)
-> load (runtime.backends.trt).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..base.fileio import atomic_write_bytes, atomic_write_text, file_sha256, read_json
from ..spec import ModelSpec, SpecError

__all__ = [
    "DEFAULT_MAX_BATCH",
    "ENGINE_FORMAT_VERSION",
    "EngineKey",
    "EngineMismatchError",
    "build_command",
    "built_engines",
    "check_engine_key",
    "engine_path",
    "key_mismatches",
    "l4t_release",
    "memory_gib",
    "profile_batches",
    "read_l4t_release",
    "read_sidecar",
    "sidecar_path",
    "timing_cache_path",
    "write_engine",
]

ENGINE_FORMAT_VERSION = 1
#: the profile's max batch when none is asked for (`irreid-edge build`, ONNX Runtime's TensorRT provider)
DEFAULT_MAX_BATCH = 32
#: JetPack's L4T release file (absent off a Jetson): "# R36 (release), REVISION: 4.3, GCID: ..."
NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")


class EngineMismatchError(SpecError):
    """The engine was built for another device, TensorRT, ONNX or precision."""


@dataclass(frozen=True)
class EngineKey:
    """Where an engine may run. Name + compute capability alone cannot tell AGX Orin, Orin NX and
    Orin Nano apart (all "Orin", 8.7), so the SM count, the memory and the L4T release are part of
    the key too; they are None in sidecars written before they were recorded (not compared then)."""

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: tuple[int, int, int]  # batch min / opt / max
    sm_count: int | None = None
    total_memory_gib: int | None = None  # rounded: the exact byte count of a Jetson's shared memory drifts
    l4t_release: str | None = None       # "36.4.3" from /etc/nv_tegra_release; None off a Jetson
    dla_core: int | None = None          # the DLA core the engine was built for; None = GPU

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["profile"] = list(self.profile)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EngineKey:
        def opt(name: str, kind: type) -> Any:
            return None if d.get(name) is None else kind(d[name])

        try:
            prof = tuple(int(b) for b in d["profile"])
            return cls(str(d["onnx_sha256"]), str(d["trt_version"]), str(d["gpu_name"]),
                       str(d["compute_capability"]), str(d["precision"]), (prof[0], prof[1], prof[2]),
                       opt("sm_count", int), opt("total_memory_gib", int), opt("l4t_release", str),
                       opt("dla_core", int))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise SpecError(f"engine key is malformed ({type(e).__name__}: {e})") from None


def memory_gib(total_bytes: int) -> int:
    return round(total_bytes / 2**30)


def l4t_release(text: str) -> str | None:
    """'# R36 (release), REVISION: 4.3, GCID: ...' -> '36.4.3' (None when the text is not that file)."""
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2).rstrip('.')}" if m else None


def read_l4t_release(path: str | os.PathLike[str] | None = None) -> str | None:
    """The L4T (JetPack) release of this Jetson (``NV_TEGRA_RELEASE``), None elsewhere."""
    try:
        return l4t_release(Path(path or NV_TEGRA_RELEASE).read_text(errors="replace"))
    except OSError:
        return None


# -- paths and commands -------------------------------------------------------------------------
def engine_path(model: str | os.PathLike[str], modality: str, precision: str, is_dir: bool = True,
                dla_core: int | None = None) -> Path:
    """<dir>/engines/<modality>.<precision>.engine; for a single foreign ONNX, engines/ beside it.
    An engine built for DLA core N is <modality>.<precision>.dla<N>.engine, so it never replaces
    the GPU engine of the same precision."""
    model = Path(model)
    dla = "" if dla_core is None else f".dla{int(dla_core)}"
    if is_dir:
        return model / "engines" / f"{modality}.{precision}{dla}.engine"
    return model.parent / "engines" / f"{model.stem}.{precision}{dla}.engine"


def built_engines(model: str | os.PathLike[str], modality: str, precision: str, is_dir: bool = True,
                  dla_core: int | None = None) -> list[Path]:
    """The engines built for (modality, precision) that exist: with ``dla_core`` only that core's;
    without, the GPU engine first, then each DLA core's (so a DLA-only build still runs)."""
    if dla_core is not None:
        return [p for p in [engine_path(model, modality, precision, is_dir, dla_core)] if p.is_file()]
    gpu = engine_path(model, modality, precision, is_dir)
    stem = gpu.name[: -len(".engine")]
    dla = sorted(p for p in gpu.parent.glob(f"{glob.escape(stem)}.dla*.engine")
                 if re.fullmatch(r"dla\d+", p.name[len(stem) + 1: -len(".engine")]))
    return [p for p in [gpu, *dla] if p.is_file()]


def sidecar_path(engine: str | os.PathLike[str]) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def timing_cache_path(engines_dir: str | os.PathLike[str], gpu_name: str, compute_capability: str,
                      trt_version: str) -> Path:
    """One timing cache per (GPU, TensorRT): reused by every build on this device."""
    cc = compute_capability.replace(".", "")
    return Path(engines_dir) / f"timing-{_slug(gpu_name)}-sm{cc}-trt{trt_version}.cache"


def build_command(model: str | os.PathLike[str], modality: str, precision: str,
                  profile: tuple[int, int, int] | None = None, dla_core: int | None = None) -> str:
    cmd = ["irreid-edge", "build", "--model", str(model), "--precision", precision, "--modality", modality]
    if profile is not None:
        cmd += ["--max-batch", str(profile[2]), "--opt-batch", str(profile[1])]
    if dla_core is not None:
        cmd += ["--dla-core", str(dla_core)]
    return shlex.join(cmd)


def profile_batches(max_batch: int, opt_batch: int | None = None,
                    static_batch: int | None = None) -> tuple[int, int, int]:
    """(1, opt, max); opt defaults to min(8, max), a typical count of crops per frame.

    A graph whose batch dimension is fixed (``static_batch``: a foreign model exported with batch 1)
    or a DLA build gets (B, B, B). TensorRT's NvInferRuntime.h, IOptimizationProfile::setDimensions:
    a static network dimension must be given as itself for min, opt and max ("if networkDims.d[i]
    != -1, then dims.d[i] == networkDims.d[i]"), and "if run on DLA, minimum, optimum, and maximum
    dimensions must be the same".
    """
    if static_batch is not None:
        if isinstance(static_batch, bool) or not isinstance(static_batch, int) or static_batch < 1:
            raise ValueError(f"static batch {static_batch!r} is invalid; it must be a positive integer")
        return (static_batch, static_batch, static_batch)
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= 4096:
        raise ValueError(f"--max-batch {max_batch!r} is invalid; it must be an integer in 1..4096")
    opt = min(8, max_batch) if opt_batch is None else opt_batch
    if isinstance(opt, bool) or not isinstance(opt, int) or not 1 <= opt <= max_batch:
        raise ValueError(f"--opt-batch {opt!r} is invalid; it must be an integer in 1..{max_batch} (--max-batch)")
    return (1, opt, max_batch)


# -- key checks (pure) --------------------------------------------------------------------------
def key_mismatches(recorded: EngineKey, trt_version: str, gpu_name: str, compute_capability: str,
                   onnx_sha256: str | None, precision: str, *, sm_count: int | None = None,
                   total_memory_gib: int | None = None, l4t_release: str | None = None) -> list[str]:
    """What differs between an engine's key and this device / ONNX / request, one phrase each.

    The TensorRT version must match exactly: a plan file only deserialises on the version that
    built it. ``onnx_sha256=None`` (the ONNX is not beside the engine) skips that comparison, as
    does a device fact the engine's sidecar does not record (built before it was recorded).
    """
    checks: list[tuple[str, object, object]] = [
        ("TensorRT", recorded.trt_version, trt_version),
        ("GPU", recorded.gpu_name, gpu_name),
        ("compute capability", recorded.compute_capability, compute_capability),
        ("precision", recorded.precision, precision),
    ]
    if recorded.sm_count is not None:
        checks.append(("SM count", recorded.sm_count, sm_count))
    if recorded.total_memory_gib is not None:
        checks.append(("memory GiB", recorded.total_memory_gib, total_memory_gib))
    if recorded.l4t_release is not None:  # a JetPack upgrade changes the driver the engine was tuned on
        checks.append(("L4T", recorded.l4t_release, l4t_release or "none"))
    out = [f"{what} {was} (engine) != {now} (here)" for what, was, now in checks if was != now]
    if onnx_sha256 is not None and recorded.onnx_sha256 != onnx_sha256:
        out.append(f"ONNX sha256 {recorded.onnx_sha256[:12]}... (engine) != {onnx_sha256[:12]}... (the ONNX now)")
    return out


def check_engine_key(engine: str | os.PathLike[str], recorded: EngineKey, trt_version: str, gpu_name: str,
                     compute_capability: str, onnx_sha256: str | None, precision: str, rebuild: str,
                     **device: Any) -> None:
    """Refuse an engine built elsewhere; ``device``: sm_count, total_memory_gib, l4t_release."""
    diff = key_mismatches(recorded, trt_version, gpu_name, compute_capability, onnx_sha256, precision, **device)
    if diff:
        raise EngineMismatchError(f"{engine}: built for another setup ({'; '.join(diff)}); rebuild it on this "
                                  f"device with `{rebuild}`")


# -- files --------------------------------------------------------------------------------------
def write_engine(path: str | os.PathLike[str], blob: bytes, key: EngineKey, spec: ModelSpec,
                 build_info: Mapping[str, Any]) -> Path:
    """Engine bytes, then the sidecar (atomic each); the sidecar records the engine's sha256, so a
    pair torn by a crash between the two writes is detected at load."""
    import hashlib

    path = Path(path)
    atomic_write_bytes(path, blob)
    payload = {"format_version": ENGINE_FORMAT_VERSION, "key": key.to_dict(),
               "engine_sha256": hashlib.sha256(blob).hexdigest(),
               "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build": dict(build_info),
               "spec": spec.to_dict()}
    atomic_write_text(sidecar_path(path), json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(engine: str | os.PathLike[str], verify_engine: bool = True) -> tuple[EngineKey, ModelSpec, dict[str, Any]]:
    """(key, spec, whole sidecar) of an engine; refuses a missing, malformed or torn pair."""
    engine = Path(engine)
    side = sidecar_path(engine)
    if not engine.is_file():
        raise SpecError(f"{engine}: engine not found; build it with `irreid-edge build`")
    payload = read_json(side, missing=f"missing, so {engine.name} cannot be checked; rebuild it with `irreid-edge build`",
                        malformed="rebuild the engine with `irreid-edge build`", error=SpecError)
    if payload.get("format_version") != ENGINE_FORMAT_VERSION:
        raise SpecError(f"{side}: format_version {payload.get('format_version')!r} is not {ENGINE_FORMAT_VERSION}; "
                        f"rebuild the engine with this irreid-edge")
    try:
        key, spec = EngineKey.from_dict(payload["key"]), ModelSpec.from_dict(payload["spec"])
    except (KeyError, SpecError) as e:
        raise SpecError(f"{side}: {e}; rebuild the engine with `irreid-edge build`") from None
    if verify_engine and payload.get("engine_sha256") != file_sha256(engine):
        raise SpecError(f"{engine}: does not match its sidecar (interrupted build?); rebuild it with `irreid-edge build`")
    return key, spec, payload
