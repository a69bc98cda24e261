"""ModelSpec: the contract every artifact carries (checkpoint, ONNX, engine, gallery index).

Runtime code reads sizes, normalisation and the embedding dimension from here and hard-codes none
of them (shared/DESIGN.md, "Contracts"). A spec is a frozen dataclass with a JSON round trip; every
field is validated on construction and a bad value is refused with an error naming the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .base.choices import MODALITIES, PRECISIONS

# Re-exported for code written before these moved to runtime.base.fileio (issue 19 item 7); new code
# imports them from runtime.base.fileio.
from .base.fileio import atomic_write_bytes, atomic_write_text, file_sha256, read_json  # noqa: F401

__all__ = [
    "SPEC_FORMAT_VERSION",
    "ModelSpec",
    "SpecError",
    "check_spec_agreement",
    "read_spec_json",
    "spec_from_onnx_metadata",
    "spec_to_onnx_metadata",
    "write_spec_json",
]

SPEC_FORMAT_VERSION = 1
ONNX_METADATA_KEY = "irreid.spec"

LAYOUTS = ("NCHW",)
CHANNEL_ORDERS = ("RGB", "BGR")
VALUE_RANGES = ("0-255",)
# Where mean/std are applied: inside the exported graph (our models) or by the runtime's
# preprocessing (foreign ONNX models whose graphs expect normalised input).
NORMALIZE_WHERE = ("graph", "preprocess")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SpecError(ValueError):
    """A ModelSpec field is missing, of the wrong type or out of range."""


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(f"ModelSpec.{name}={value!r} is invalid; valid values: {', '.join(choices)}")


def _positive_int(name: str, value: Any, upper: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"ModelSpec.{name}={value!r} is invalid; it must be a positive integer")
    if upper is not None and value > upper:
        raise SpecError(f"ModelSpec.{name}={value!r} is invalid; it must be at most {upper}")


def _triple(name: str, value: Any, positive: bool) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise SpecError(f"ModelSpec.{name}={value!r} is invalid; it must be three numbers") from None
    # NaN passes `min(out) <= 0` (every comparison with NaN is false): test finiteness first (issue 17 item 3).
    if len(out) != 3 or not all(math.isfinite(v) for v in out) or (positive and min(out) <= 0):
        what = "three positive numbers" if positive else "three numbers"
        raise SpecError(f"ModelSpec.{name}={value!r} is invalid; it must be {what}, none NaN or infinite")
    return out  # type: ignore[return-value]


def _sha(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise SpecError(f"ModelSpec.{name}={value!r} is invalid; it must be a lowercase hex sha256 or null")


@dataclass(frozen=True)
class ModelSpec:
    """Everything a consumer needs to feed a model and read its output.

    Pixels go in raw (0-255, RGB unless ``channel_order`` says BGR, NCHW float32). When
    ``normalize == "graph"`` (all models this project exports) mean/std are applied inside the
    graph, so no consumer normalises twice; ``mean``/``std`` are in 0-1 units as torchvision's.
    """

    name: str
    modality: str
    input_height: int
    input_width: int
    embedding_dim: int
    stripes: int = 3
    version: str = "0.1.0"
    input_layout: str = "NCHW"
    channel_order: str = "RGB"
    value_range: str = "0-255"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    normalize: str = "graph"
    l2_normalized: bool = True
    precision: str = "fp32"
    opset: int | None = None
    checkpoint_sha256: str | None = None
    onnx_sha256: str | None = None
    calibration: Mapping[str, Any] | None = None
    format_version: int = SPEC_FORMAT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"ModelSpec.name={self.name!r} is invalid; it must be a non-empty string")
        _choice("modality", self.modality, MODALITIES)
        _positive_int("input_height", self.input_height, 8192)
        _positive_int("input_width", self.input_width, 8192)
        _positive_int("embedding_dim", self.embedding_dim, 1 << 16)
        _positive_int("stripes", self.stripes, 9)
        _choice("input_layout", self.input_layout, LAYOUTS)
        _choice("channel_order", self.channel_order, CHANNEL_ORDERS)
        _choice("value_range", self.value_range, VALUE_RANGES)
        _choice("normalize", self.normalize, NORMALIZE_WHERE)
        _choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.l2_normalized, bool):
            raise SpecError(f"ModelSpec.l2_normalized={self.l2_normalized!r} is invalid; it must be true or false")
        if self.opset is not None:
            _positive_int("opset", self.opset, 100)
        _sha("checkpoint_sha256", self.checkpoint_sha256)
        _sha("onnx_sha256", self.onnx_sha256)
        if self.format_version != SPEC_FORMAT_VERSION:
            raise SpecError(
                f"ModelSpec.format_version={self.format_version!r} is not supported by this irreid-edge "
                f"(it reads version {SPEC_FORMAT_VERSION}); re-export the model with this version"
            )
        if self.calibration is not None and not isinstance(self.calibration, Mapping):
            raise SpecError("ModelSpec.calibration is invalid; it must be a JSON object or null")
        if not isinstance(self.extra, Mapping):
            raise SpecError("ModelSpec.extra is invalid; it must be a JSON object")
        # Normalise sequences to tuples so equal specs compare and hash equal.
        object.__setattr__(self, "mean", _triple("mean", self.mean, positive=False))
        object.__setattr__(self, "std", _triple("std", self.std, positive=True))

    def __hash__(self) -> int:  # calibration/extra are dicts; hash the canonical JSON instead
        return hash(self.to_json())

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["calibration"] = None if self.calibration is None else dict(self.calibration)
        d["extra"] = dict(self.extra)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        if not isinstance(data, Mapping):
            raise SpecError(f"a ModelSpec must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(f"ModelSpec has unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(names))}")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise SpecError(f"ModelSpec is missing required field(s): {', '.join(missing)}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"ModelSpec JSON is malformed: {e}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    # -- identity ------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """sha256 of the fields that decide what an embedding means.

        Two specs with the same fingerprint produce comparable embeddings; a gallery index records
        it and refuses a model whose fingerprint differs. Precision is included: int8 and fp32
        embeddings of one checkpoint are close but not the same model.
        """
        keys = ("name", "modality", "input_height", "input_width", "embedding_dim", "stripes",
                "channel_order", "mean", "std", "normalize", "l2_normalized", "precision",
                "checkpoint_sha256", "onnx_sha256")
        d = self.to_dict()
        payload = json.dumps({k: d[k] for k in keys}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one preprocessed image."""
        return (3, self.input_height, self.input_width)


# -- files -------------------------------------------------------------------------------------
def check_spec_agreement(folder: ModelSpec, embedded: ModelSpec, source: str) -> None:
    """Refuse an ONNX or engine whose embedded spec describes another encoder than the folder's spec.json."""
    keys = ("modality", "input_height", "input_width", "embedding_dim")
    diff = [f"{k} {getattr(embedded, k)} != {getattr(folder, k)}" for k in keys
            if getattr(embedded, k) != getattr(folder, k)]
    if diff:
        raise SpecError(f"{source}: its embedded spec disagrees with spec.json ({'; '.join(diff)}); the folder "
                        f"mixes files from different exports: re-export it with `python -m export.onnx`")


def write_spec_json(spec: ModelSpec, path: str | os.PathLike[str]) -> None:
    atomic_write_text(path, spec.to_json() + "\n")


def read_spec_json(path: str | os.PathLike[str]) -> ModelSpec:
    data = read_json(path, missing="spec file not found; export the model with `python -m export.onnx`",
                     malformed="rewrite it with `irreid-edge spec` or re-export the model", error=SpecError)
    try:
        return ModelSpec.from_dict(data)
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None


# -- ONNX metadata_props (the onnx package is not needed: we take the model's proto list) --------
def spec_to_onnx_metadata(spec: ModelSpec) -> dict[str, str]:
    """Key/value pairs for an ONNX model's ``metadata_props``."""
    return {ONNX_METADATA_KEY: spec.to_json(), "irreid.format_version": str(SPEC_FORMAT_VERSION)}


def spec_from_onnx_metadata(metadata: Mapping[str, str], source: str = "model") -> ModelSpec:
    """Read the spec from ``metadata_props`` (a dict, e.g. ORT's ``custom_metadata_map``)."""
    text = metadata.get(ONNX_METADATA_KEY)
    if text is None:
        raise SpecError(
            f"{source}: no irreid-edge spec in the ONNX metadata; for a foreign model write one with "
            f"`irreid-edge spec --onnx {source} --height H --width W`"
        )
    try:
        return ModelSpec.from_json(text)
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None


def set_onnx_metadata(model_proto: Any, spec: ModelSpec) -> None:
    """Write the spec into an ``onnx.ModelProto``'s ``metadata_props`` (replacing an older one)."""
    entries = spec_to_onnx_metadata(spec)
    keep = [p for p in model_proto.metadata_props if p.key not in entries]
    del model_proto.metadata_props[:]
    for p in keep:
        model_proto.metadata_props.append(p)
    for k, v in entries.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = k, v


def get_onnx_metadata(model_proto: Any, source: str = "model") -> ModelSpec:
    return spec_from_onnx_metadata({p.key: p.value for p in model_proto.metadata_props}, source)
