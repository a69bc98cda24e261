"""`irreid-edge watch`: a video, stream, camera or image folder in; people detected, tracked, matched
against the gallery; events (JSON lines), an annotated video and a summary table out (docs/watch.md).

Exit status: 0 when the source was read to its end (or --max-frames); 2 when it could not be opened,
or failed part-way (truncated, dead, stalled): then the events, thumbnails and video written up to
the failure are kept and the error is the last line on stderr.
"""

from __future__ import annotations

import argparse
import json

from ..base.choices import MODALITIES

HELP = "watch a video, stream, camera or image folder: detect, track and re-identify people against the gallery"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ._common import add_model_arguments

    p.add_argument("--source", required=True, help="video file, rtsp:// or http(s):// stream URL, camera device "
                   "(/dev/video0 or 0), or a folder of frames (taken in name order)")
    p.add_argument("--modality", choices=MODALITIES, default="ir", help="the source's modality (default ir)")
    p.add_argument("--gallery", help="folder of gallery crops (its index is refreshed first)")
    p.add_argument("--gallery-modality", choices=MODALITIES, default="rgb")
    p.add_argument("--out", default="watch-out", help="folder for events.jsonl, annotated.mp4 and thumbs/ "
                   "(default ./watch-out)")
    p.add_argument("--fps", type=float, default=None, help="process at most this many frames per second of "
                   "source time (default: every frame; a live source also drops frames it cannot keep up with)")
    p.add_argument("--detector", default=None, metavar="NAME|FILE.onnx", help="hot, hog, haar, or a YOLO .onnx "
                   "(default: hot for --modality ir, hog for rgb; docs/watch.md has their figures)")
    p.add_argument("--detector-classes", default="0", help="comma-separated class ids to keep from a YOLO "
                   "detector (default 0: COCO person)")
    p.add_argument("--detector-threshold", type=float, default=0.1, help="least YOLO score kept (default 0.1; "
                   "the tracker uses the weak ones only to continue tracks)")
    p.add_argument("--detector-layout", default="auto", choices=("auto", "yolov8", "yolov5", "end2end"),
                   help="a YOLO output layout (default: told from the output shape)")
    p.add_argument("--tracker", default="bytetrack", choices=("bytetrack", "ocsort", "sort"))
    p.add_argument("--top-k", type=int, default=5, help="gallery matches per track (default 5)")
    p.add_argument("--threshold", type=float, default=0.5, metavar="D", help="a top-1 distance (1 - cosine) "
                   "above D is reported as unknown (default 0.5)")
    p.add_argument("--requery-seconds", type=float, default=2.0, help="ask the gallery again for a track at most "
                   "this often, when a better crop of it was seen (default 2)")
    p.add_argument("--enroll", action="store_true", help="add each finished track's best crops to the gallery "
                   "(needs --modality equal to --gallery-modality: a colour camera for a colour gallery)")
    p.add_argument("--camera", default="", help="camera name recorded with enrolled crops")
    p.add_argument("--no-video", action="store_true", help="do not write annotated.mp4")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many processed frames")
    p.add_argument("--open-timeout", type=float, default=10.0, help="seconds to wait for a stream to open")
    p.add_argument("--read-timeout", type=float, default=10.0, help="seconds without a frame before a stream "
                   "counts as stalled")
    p.add_argument("--folder-fps", type=float, default=10.0, help="frame rate of a folder of frames (default 10)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    from ._store import STORE_HELP

    p.add_argument("--store", metavar="URI", help=STORE_HELP)
    add_model_arguments(p)


def _classes(text: str) -> tuple[int, ...]:
    from ..base.errors import UserError

    try:
        out = tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise UserError(f"--detector-classes {text!r}: give class ids as integers, e.g. 0 or 0,1") from None
    if not out or min(out) < 0:
        raise UserError(f"--detector-classes {text!r}: give at least one class id >= 0")
    return out


def run(args: argparse.Namespace) -> int:
    from ..api import watch
    from ..base.errors import UserError
    from ._common import finite, model_path, positive

    positive(args.top_k, "--top-k")
    for name in ("fps", "open_timeout", "read_timeout", "folder_fps", "requery_seconds"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
        finite(value, f"--{name.replace('_', '-')}")
    finite(args.threshold, "--threshold")
    if args.max_frames is not None:
        positive(args.max_frames, "--max-frames")
    result = watch(args.source, model_path(args), gallery=args.gallery, store=args.store, out=args.out,
                   modality=args.modality, gallery_modality=args.gallery_modality, detector=args.detector,
                   tracker=args.tracker, fps=args.fps, open_timeout=args.open_timeout,
                   read_timeout=args.read_timeout, folder_fps=args.folder_fps,
                   precision=None if args.precision == "auto" else args.precision, backend=args.backend,
                   threads=args.threads, detector_classes=_classes(args.detector_classes),
                   detector_threshold=args.detector_threshold, detector_layout=args.detector_layout,
                   top_k=args.top_k, threshold=args.threshold, requery_seconds=args.requery_seconds,
                   enroll=args.enroll, camera=args.camera, video=not args.no_video, max_frames=args.max_frames,
                   quiet=args.quiet)
    if args.json:
        print(json.dumps({"events": str(result.events), "video": str(result.video) if result.video else None,
                          "decoded": result.decoded, "processed": result.processed, "dropped": result.dropped,
                          "skipped": result.skipped, "enrolled": result.enrolled, "error": result.error,
                          "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
                          "tracks": [r.to_event("track") for r in result.tracks]}, indent=2))
    else:
        print(result.summary())
        print(f"events: {result.events}" + (f"; video: {result.video}" if result.video else ""))
    if result.error:
        raise UserError(result.error)
    return 0
