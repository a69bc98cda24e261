"""Pieces shared by the index / match / embed / bench commands (not a command itself)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..base.choices import INFERENCE_BACKEND_CHOICES, PRECISION_CHOICES
from ..base.errors import one_line


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="exported model folder or a foreign .onnx "
                   "(default: the newest export under $IRREID_RUNS or ./runs)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="which precision to run (default auto: the fastest TensorRT engine built on this device, "
                        "int8 > fp16 > fp32, else ONNX Runtime with fp16 on a GPU provider and fp32 on the CPU; "
                        "an explicit precision that was not exported is an error)")
    p.add_argument("--backend", choices=INFERENCE_BACKEND_CHOICES, default="auto",
                   help="inference backend (auto: TensorRT engine if built, else the best ONNX Runtime provider)")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: the backend's)")
    p.add_argument("--dla-core", type=int, default=None, metavar="N",
                   help="run the TensorRT engine built for DLA core N (`build --dla-core N`; default: the GPU engine, "
                        "else a DLA one)")


def add_index_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", help="index file (default: <gallery>/.irreid/index.irx)")
    p.add_argument("--follow-links", action="store_true", help="use symlinks leading out of the gallery")
    p.add_argument("--batch", type=int, default=32, help="images per inference batch")
    p.add_argument("--workers", type=int, default=4, help="image decoding threads (0: decode in the main thread)")
    p.add_argument("--rebuild", action="store_true", help="discard the existing index and embed everything again")
    p.add_argument("--checkpoint-every", type=float, default=30.0, metavar="SECONDS",
                   help="save progress this often so an interrupted run resumes (default 30)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-file notes")


def positive(value: int, name: str) -> int:
    from ..base.errors import UserError

    if value is None or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value}")
    return value


def finite(value: float | None, name: str, low: float = 0.0) -> float | None:
    """None, or a finite number >= ``low``: argparse's float() takes "nan" and "inf" (issue 17 item 10)."""
    from ..base.errors import UserError

    if value is not None and not (math.isfinite(value) and value >= low):
        raise UserError(f"{name} must be a finite number >= {low:g}, got {value}")
    return value


def model_path(args: argparse.Namespace) -> Path:
    from ..model_dir import default_model_dir

    return Path(args.model) if args.model else default_model_dir()


def run_facts(enc: Any) -> dict[str, str]:
    """What ran, for every command's JSON: the backend and the precision actually used."""
    return {"backend": enc.backend, "precision": enc.spec.precision}


def say(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"irreid-edge: {one_line(msg)}", file=sys.stderr)


def skip_line(path: str, reason: str) -> str:
    """``<path>: <reason>``, unless the reason already starts with the file (the decoder's do)."""
    return reason if reason.startswith(path) else f"{path}: {reason}"


def report_skipped(skipped: list[tuple[str, str]], quiet: bool) -> None:
    """One line per skipped file, naming it."""
    for path, reason in skipped:
        say(skip_line(path, reason), quiet)


def first_skip(skipped: list[tuple[str, str]]) -> str:
    """For a final error that refers to the skipped files: the first one, named, so the error says
    why even under --quiet (which hides the per-file lines; issue 17 item 10)."""
    if not skipped:
        return ""
    more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
    return f"first: {skip_line(*skipped[0])}{more}"


def detect_modality(path: str | Path) -> str:
    """"ir" when all three channels are equal (grayscale / replicated IR), else "rgb"."""
    from ..preprocess import decode_image

    im = decode_image(path, target=(64, 64))  # a huge image may be shrunk: equal channels stay equal
    if im.mode in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return "ir"
    if im.mode == "P":
        im = im.convert("RGB")
    if im.mode != "RGB":
        im = im.convert("RGB")
    a = np.asarray(im)  # (H, W, 3)
    return "ir" if np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]) else "rgb"


def gallery_modality(requested: str, files: list[str] | list[Path], sample: int = 16) -> str:
    """The gallery encoder: as asked, or for ``auto`` IR when every sampled file is grayscale."""
    if requested != "auto":
        return requested
    from ..preprocess import ImageDecodeError

    seen = []
    step = max(1, len(files) // sample)
    for p in files[::step][:sample]:
        try:
            seen.append(detect_modality(p))
        except ImageDecodeError:
            continue
    return "ir" if seen and all(m == "ir" for m in seen) else "rgb"


class Encoders:
    """Opens one encoder per modality on first use (match may need both)."""

    def __init__(self, model: Path, args: argparse.Namespace, verbose: bool = True) -> None:
        if args.threads is not None:
            positive(args.threads, "--threads")  # -1 was passed on to ONNX Runtime (issue 17 item 10)
        self.model, self.args, self.verbose = model, args, verbose
        self._open: dict[str, Any] = {}

    def get(self, modality: str) -> Any:
        if modality not in self._open:
            from ..encoder import open_encoder

            self._open[modality] = open_encoder(self.model, modality=modality, precision=self.args.precision,
                                                backend=self.args.backend, verbose=self.verbose,
                                                threads=self.args.threads, dla_core=getattr(self.args, "dla_core", None))
        return self._open[modality]
