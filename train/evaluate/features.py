"""L2-normalised embeddings of dataset records, from a training checkpoint or an exported model.

Images go through ``runtime.preprocess`` (the deployment preprocessing: decode, 3 channels, bilinear
resize, raw 0-255 NCHW float32), so a checkpoint and its exported ONNX are measured on identical
inputs. A record marked ``pseudo_ir`` (a colour photo standing in for infrared, e.g. Market-1501
cameras 4-6) is converted by ``train.data.transforms.apply_pseudo_ir``, the conversion training uses.
Each record is embedded by its own modality's encoder (0 = colour, 1 = IR).

Flip-at-test (``flip=True``) also embeds the horizontally flipped image; ``Features.get("flip")``
returns normalise(e + e_flipped). Embeddings are cached per (path, modality, pseudo-IR kind, view), so
the SYSU query set is embedded once for ten trials and gallery images drawn again are not recomputed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from runtime.base.choices import MODALITIES
from runtime.preprocess import decode_image, preprocess_image, to_rgb
from runtime.spec import ModelSpec

from ..data.records import Record

__all__ = ["Embedder", "FeatureCache", "OnnxEmbedder", "TorchEmbedder", "load_record_batch", "open_embedder"]

MODALITY_NAMES = MODALITIES  # position = the modality label the data readers use (0 rgb, 1 ir)


class Embedder(Protocol):
    """Embeds a preprocessed batch of one modality; ``specs[m]`` says the input size of modality m."""

    specs: dict[int, ModelSpec]
    description: str

    def embed(self, batch: np.ndarray, modality: int) -> np.ndarray:  # (N,3,H,W) 0-255 -> (N,D) L2-normed
        ...


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def load_record_image(rec: Record) -> Image.Image:
    """Decoded RGB image of a record, seen as its ``view`` asks (an LLVIP visible crop mirrored or
    re-framed: train.data.llvip_views), pseudo-IR converted when the record asks for it."""
    if rec.view is not None:
        from ..data.llvip_views import view_image

        im = view_image(rec.path, rec.view)
    else:
        im = to_rgb(decode_image(rec.path))
    if rec.pseudo_ir is not None:
        from ..data.transforms import apply_pseudo_ir

        im = apply_pseudo_ir(im, rec.pseudo_ir)
    return im


def load_record_batch(records: Sequence[Record], spec: ModelSpec) -> np.ndarray:
    """(N, 3, H, W) float32 raw 0-255, exactly runtime.preprocess's output."""
    arrays = [preprocess_image(load_record_image(r), spec.input_height, spec.input_width, spec.channel_order)
              for r in records]
    if not arrays:
        return np.zeros((0, *spec.input_shape), np.float32)
    return np.stack(arrays)


# -- backends -----------------------------------------------------------------------------------
def _model_kwargs(ckpt: dict[str, Any], source: str) -> tuple[str, dict[str, Any]]:
    """(name, create_model kwargs) from a checkpoint: 'model_kwargs' or the config's 'model' entry."""
    mk = ckpt.get("model_kwargs")
    if mk is None:
        mk = (ckpt.get("config") or {}).get("model")
    if not isinstance(mk, dict) or "name" not in mk:
        raise ValueError(f"{source}: the checkpoint has no model_kwargs/config['model'] with a model name; "
                         f"it was not written by python -m train.fit")
    if isinstance(mk.get("kwargs"), dict):
        return str(mk["name"]), dict(mk["kwargs"])
    return str(mk["name"]), {k: v for k, v in mk.items() if k not in ("name", "backbone")}


def _checkpoint_specs(ckpt: dict[str, Any], source: str) -> dict[int, ModelSpec]:
    specs = ckpt.get("spec")
    if not isinstance(specs, dict):
        raise ValueError(f"{source}: the checkpoint has no 'spec'; re-save it with python -m train.fit")
    if "rgb" in specs and "ir" in specs:
        return {m: ModelSpec.from_dict(specs[name]) for m, name in enumerate(MODALITY_NAMES)}
    one = ModelSpec.from_dict(specs)  # a single spec serves both modalities
    return {0: one.replace(modality="rgb"), 1: one.replace(modality="ir")}


@dataclass
class TorchEmbedder:
    """A DATNet rebuilt from a checkpoint, in eval mode, on the CPU (or ``device``)."""

    model: Any
    specs: dict[int, ModelSpec]
    description: str
    device: str = "cpu"
    config: dict[str, Any] = field(default_factory=dict)  # the checkpoint's TrainConfig.to_dict()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str = "cpu") -> TorchEmbedder:
        from ..checkpoint import load_checkpoint
        from ..models import create_model
        from ..plugins import load_plugins

        ckpt = load_checkpoint(path, map_location=device)
        load_plugins((ckpt.get("config") or {}).get("plugins") or ())  # a backbone of the user's own
        name, kwargs = _model_kwargs(ckpt, str(path))
        for key in ("mean", "std", "domain_levels"):  # JSON turned tuples into lists
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        kwargs["pretrained"] = "none"  # the checkpoint's own weights follow
        if "num_classes" in ckpt:
            kwargs["num_classes"] = int(ckpt["num_classes"])
        model = create_model(name, **kwargs)
        model.load_state_dict(ckpt["model"])
        model.eval().to(device)
        specs = {m: s.replace(embedding_dim=model.embedding_dim)
                 for m, s in _checkpoint_specs(ckpt, str(path)).items()}
        return cls(model=model, specs=specs, description=f"checkpoint {path}", device=device,
                   config=dict(ckpt.get("config") or {}))

    def embed(self, batch: np.ndarray, modality: int) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model.embed(torch.from_numpy(batch).to(self.device), int(modality))
        return _l2(out.float().cpu().numpy())


@dataclass
class OnnxEmbedder:
    """The exported per-modality encoders through runtime.encoder (ONNX Runtime or TensorRT)."""

    encoders: dict[int, Any]
    description: str
    specs: dict[int, ModelSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.specs = {m: e.spec for m, e in self.encoders.items()}

    @classmethod
    def open(cls, model_dir: str | os.PathLike[str], precision: str = "fp32", backend: str = "auto") -> OnnxEmbedder:
        from runtime.encoder import open_encoder

        encs = {m: open_encoder(model_dir, name, precision, backend=backend, verbose=False)
                for m, name in enumerate(MODALITY_NAMES)}
        backends = sorted({e.backend for e in encs.values()})
        return cls(encoders=encs, description=f"onnx {model_dir} ({precision}, {', '.join(backends)})")

    def embed(self, batch: np.ndarray, modality: int) -> np.ndarray:
        return _l2(self.encoders[int(modality)].embed(np.ascontiguousarray(batch, np.float32)))


def open_embedder(checkpoint: str | None = None, onnx: str | None = None, precision: str = "fp32",
                  backend: str = "auto", device: str = "cpu") -> Embedder:
    if (checkpoint is None) == (onnx is None):
        raise ValueError("give exactly one of a checkpoint (--checkpoint) or an exported model folder (--onnx)")
    if checkpoint is not None:
        if not Path(checkpoint).is_file():  # before importing torch: a typo should fail fast
            raise ValueError(f"{checkpoint}: checkpoint not found; train one with python -m train.fit")
        return TorchEmbedder.from_checkpoint(Path(checkpoint), device=device)
    return OnnxEmbedder.open(Path(str(onnx)), precision=precision, backend=backend)


# -- the cache ----------------------------------------------------------------------------------
_Key = tuple[str, int, str | None, str | None]


def _key(rec: Record) -> _Key:
    return (rec.path, rec.modality, rec.pseudo_ir, rec.view)  # a re-framed / mirrored view is its own image


@dataclass
class FeatureCache:
    """Embeddings per record, computed on first request, plain and (with ``flip``) flipped."""

    embedder: Embedder
    flip: bool = False
    batch_size: int = 64
    plain: dict[_Key, np.ndarray] = field(default_factory=dict)
    flipped: dict[_Key, np.ndarray] = field(default_factory=dict)

    def _fill(self, records: Sequence[Record]) -> None:
        todo = list({_key(r): r for r in records if _key(r) not in self.plain}.values())
        for m in (0, 1):
            recs = [r for r in todo if r.modality == m]
            for s in range(0, len(recs), self.batch_size):
                chunk = recs[s : s + self.batch_size]
                x = load_record_batch(chunk, self.embedder.specs[m])  # (n, 3, H, W)
                emb = self.embedder.embed(x, m)
                emb_f = self.embedder.embed(np.ascontiguousarray(x[..., ::-1]), m) if self.flip else None
                for i, r in enumerate(chunk):
                    self.plain[_key(r)] = emb[i]
                    if emb_f is not None:
                        self.flipped[_key(r)] = emb_f[i]

    def get(self, records: Sequence[Record], variant: str = "plain") -> np.ndarray:
        """(N, D) float32: 'plain' embeddings, or 'flip' = normalise(plain + flipped)."""
        if variant not in ("plain", "flip"):
            raise ValueError(f"unknown feature variant {variant!r}; valid: plain, flip")
        if variant == "flip" and not self.flip:
            raise ValueError("flip features were not computed; create the cache with flip=True")
        self._fill(records)
        plain = np.stack([self.plain[_key(r)] for r in records]) if records else np.zeros((0, 0), np.float32)
        if variant == "plain":
            return plain.astype(np.float32)
        flipped = np.stack([self.flipped[_key(r)] for r in records])
        return _l2(plain + flipped).astype(np.float32)
