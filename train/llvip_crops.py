"""``python -m train.llvip_crops``: cut LLVIP's annotated people into thermal / visible crop pairs.

The real-thermal protocol (``python -m train.evaluate --data llvip-pairs``) reads person crops in the
llvip-dev layout: ``ir/<frame>_<box>.jpg`` and ``vis/<frame>_<box>.jpg`` with the same name are one
person at one instant. The development copy covers one street; this command makes the same layout
from a full LLVIP download (Jia et al., ICCVW 2021), so you can measure a model on its other scenes:

    python -m train.llvip_crops /data/LLVIP --split test --out llvip-test-crops
    python -m train.evaluate --checkpoint runs/market-cpu/best.pt --data llvip-pairs \\
        --root llvip-test-crops --llvip-split all

LLVIP's layout (the dataset's README): ``Annotations/<frame>.xml`` (VOC; one file for both
modalities, since the frames are pixel-registered), ``infrared/{train,test}/<frame>.jpg`` and
``visible/{train,test}/<frame>.jpg``. Each ``person`` object becomes crop ``<frame>_<k>.jpg``, ``k``
counting the file's person objects from 0 in XML order (llvip-dev's numbering); both crops use the
same box, clipped to the image. A thermal frame without its visible twin gives ``ir_only/`` crops.

Resumable and safe to interrupt: every crop is written atomically, a pair whose two files exist is
skipped, so re-running after a crash, a full disk or Ctrl-C finishes the job without redoing it.
Annotation files are parsed with ElementTree, which never fetches external entities.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from runtime.base.fileio import atomic_write, explain_full_disk
from runtime.preprocess import ImageDecodeError, decode_image

from .data.records import DataLayoutError, list_images, require_dir
from .logs import summary_table

__all__ = ["CropSummary", "cut_llvip_crops", "main", "person_boxes"]

SPLITS = ("train", "test")
_LAYOUT = "LLVIP layout: Annotations/<frame>.xml, infrared/{train,test}/, visible/{train,test}/"
_FRAME = re.compile(r"^(\d+)$")


@dataclass
class CropSummary:
    frames: int = 0  # thermal frames read
    boxes: int = 0  # person boxes in their annotations
    written: int = 0  # pairs written by this run
    already: int = 0  # pairs found complete from an earlier run
    too_small: int = 0  # boxes under --min-height, or outside the frame
    no_annotation: int = 0  # thermal frames without an annotation file
    ir_only: int = 0  # thermal crops of frames whose visible frame is missing (new or already there)

    @property
    def pairs(self) -> int:
        return self.written + self.already


def person_boxes(xml_path: str | os.PathLike[str], names: Iterable[str] = ("person",)
                 ) -> list[tuple[int, int, int, int]]:
    """(xmin, ymin, xmax, ymax) of each object named ``names`` in a VOC annotation, in file order."""
    wanted = {n.lower() for n in names}
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise DataLayoutError(f"{xml_path}: not a VOC annotation ({e}); re-download it or delete it") from None
    boxes = []
    for obj in root.iter("object"):
        if (obj.findtext("name") or "").strip().lower() not in wanted:
            continue
        bb = obj.find("bndbox")
        try:
            assert bb is not None
            x0, y0, x1, y1 = (round(float(bb.findtext(k) or "")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AssertionError, ValueError):
            raise DataLayoutError(f"{xml_path}: an object without a numeric bndbox (xmin, ymin, xmax, ymax); "
                                  f"fix or delete the file") from None
        boxes.append((x0, y0, x1, y1))
    return boxes


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _write(path: Path, im: Image.Image) -> None:
    with explain_full_disk(path, "cannot write the crop", "free some space and re-run the same command "
                           "(the crops already written are kept and skipped)"):
        atomic_write(path, _jpeg(im))


def _frames(folder: Path, limit: int | None) -> list[str]:
    paths = list_images(folder)
    if not paths:
        raise DataLayoutError(f"{folder}: no images; expected the {_LAYOUT}")
    return paths[:limit] if limit else paths


def cut_llvip_crops(root: str | os.PathLike[str], out: str | os.PathLike[str], split: str = "test",
                    min_height: int = 0, limit: int | None = None, progress: bool = False) -> CropSummary:
    """Cut every annotated person of ``split`` into ``out``/{ir,vis,ir_only}/<frame>_<k>.jpg."""
    if split not in SPLITS:
        raise ValueError(f"unknown LLVIP split {split!r}; valid: {', '.join(SPLITS)}")
    r = require_dir(root, f"the LLVIP root ({_LAYOUT})")
    ann = require_dir(r / "Annotations", f"LLVIP annotations ({_LAYOUT})")
    ir_dir = require_dir(r / "infrared" / split, f"LLVIP thermal frames ({_LAYOUT})")
    vis_dir = r / "visible" / split
    out_p = Path(out)
    if out_p.resolve() == r.resolve() or r.resolve() in out_p.resolve().parents:
        raise ValueError(f"{out_p}: inside the LLVIP root {r}; write the crops somewhere else")
    summary = CropSummary()
    frames = _frames(ir_dir, limit)
    bar = frames
    if progress:
        from tqdm import tqdm

        bar = tqdm(frames, desc=f"LLVIP {split}", unit="frame", dynamic_ncols=True, file=sys.stderr)
    for ir_path in bar:
        stem = Path(ir_path).stem
        if not _FRAME.match(stem):
            raise DataLayoutError(f"{ir_path}: not an LLVIP frame name (digits, e.g. 190001.jpg); move it out of "
                                  f"{ir_dir}")
        summary.frames += 1
        xml = ann / f"{stem}.xml"
        if not xml.is_file():
            summary.no_annotation += 1
            continue
        boxes = person_boxes(xml)
        summary.boxes += len(boxes)
        vis_path = vis_dir / Path(ir_path).name
        twin = vis_path.is_file()
        todo = []
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            if y1 - y0 < max(1, min_height) or x1 <= x0:
                summary.too_small += 1
                continue
            name = f"{stem}_{k}.jpg"
            targets = [out_p / "ir" / name, out_p / "vis" / name] if twin else [out_p / "ir_only" / name]
            if all(t.is_file() for t in targets):
                if twin:
                    summary.already += 1
                else:
                    summary.ir_only += 1
                continue
            todo.append(((x0, y0, x1, y1), targets))
        if not todo:
            continue
        try:
            ir_im = decode_image(ir_path).convert("RGB")
            vis_im = decode_image(vis_path).convert("RGB") if twin else None
        except ImageDecodeError as e:
            raise DataLayoutError(f"{e} (LLVIP frame {stem}; re-download it, or delete its pair and annotation)"
                                  ) from None
        if vis_im is not None and vis_im.size != ir_im.size:
            raise DataLayoutError(f"{vis_path}: {vis_im.size[0]}x{vis_im.size[1]} but its thermal twin {ir_path} is "
                                  f"{ir_im.size[0]}x{ir_im.size[1]}; LLVIP's frames are registered, so one of them "
                                  f"is not LLVIP's: re-download both")
        w, h = ir_im.size
        for (x0, y0, x1, y1), targets in todo:
            box = (max(0, x0), max(0, y0), min(w, x1), min(h, y1))
            if box[2] <= box[0] or box[3] - box[1] < max(1, min_height):
                summary.too_small += 1  # outside the frame once clipped
                continue
            # the visible crop first: a pair is complete only once its thermal crop exists too
            if vis_im is not None:
                _write(targets[1], vis_im.crop(box))
            _write(targets[0], ir_im.crop(box))
            if vis_im is not None:
                summary.written += 1
            else:
                summary.ir_only += 1
    return summary


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.llvip_crops", description=__doc__.split("\n\n")[0], allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Then: python -m train.evaluate --checkpoint C --data llvip-pairs --root OUT --llvip-split all")
    p.add_argument("root", help="the LLVIP folder (Annotations/, infrared/, visible/)")
    p.add_argument("--out", required=True, help="where the crops go (ir/, vis/, ir_only/); re-running resumes")
    p.add_argument("--split", default="test", choices=SPLITS, help="LLVIP's split (default test: its other scenes)")
    p.add_argument("--min-height", type=int, default=0, help="skip boxes shorter than this many pixels")
    p.add_argument("--limit", type=int, default=None, help="only the first N frames (sorted by name)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        s = cut_llvip_crops(args.root, args.out, args.split, args.min_height, args.limit, progress=not args.quiet)
    except KeyboardInterrupt:
        print("train.llvip_crops: interrupted; the crops written so far are kept: re-run to finish",
              file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        print(f"train.llvip_crops: error: {e}", file=sys.stderr)
        return 2
    print(summary_table([
        ("LLVIP split", f"{args.split} ({args.root})"),
        ("thermal frames read", f"{s.frames} ({s.no_annotation} without an annotation)"),
        ("person boxes", f"{s.boxes} ({s.too_small} under --min-height {args.min_height} or outside the frame)"),
        ("pairs in the output", f"{s.pairs} (written now {s.written}, {s.already} already there)"),
        ("thermal crops without a visible twin", f"{s.ir_only} (ir_only/, not read by the protocol)"),
        ("output", str(args.out)),
    ]))
    print(f"next: python -m train.evaluate --checkpoint runs/<run>/best.pt --data llvip-pairs --root {args.out} "
          f"--llvip-split all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
