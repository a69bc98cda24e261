"""Helpers for the `watch` tests: a channel-blind tiny model folder and a rendered street."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tiny_onnx import make_tiny_spec

from runtime.model_dir import write_model_dir_specs
from runtime.spec import set_onnx_metadata

H, W = 64, 32
GRID = (16, 1)  # the thumbnail's rows, columns: a vertical profile, blind to the legs' swing
D = GRID[0] * GRID[1]


def make_thumbnail_onnx(path: Path, spec: Any) -> Path:
    """An encoder honouring the graph contract (raw 0-255 NCHW in, unit rows out) whose embedding is a
    contrast-normalised 8x4 grey thumbnail of the crop: mean of R, G, B -> 8x8 average pooling ->
    minus its mean -> L2 norm. It sees channel means only, so a person's colour crop and its thermal
    rendering (the mean of the channels, runtime.watch.synthetic) embed alike: the tests exercise the
    pipeline, not cross-modal learning."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kh, kw = spec.input_height // GRID[0], spec.input_width // GRID[1]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["grey"], axes=[1], keepdims=1),  # (N, 1, H, W)
        helper.make_node("AveragePool", ["grey"], ["thumb"], kernel_shape=[kh, kw], strides=[kh, kw]),  # (N, 1, 8, 4)
        helper.make_node("Reshape", ["thumb", "flat_shape"], ["flat"]),  # (N, 32)
        helper.make_node("ReduceMean", ["flat"], ["mu"], axes=[1], keepdims=1),  # (N, 1)
        helper.make_node("Sub", ["flat", "mu"], ["centred"]),
        helper.make_node("LpNormalization", ["centred"], ["embeddings"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes, "thumbnail",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, spec.input_height, spec.input_width])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", spec.embedding_dim])],
        [numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    set_onnx_metadata(model, spec)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_blind_model_dir(folder: Path) -> Path:
    """rgb.onnx and ir.onnx, both ``make_thumbnail_onnx``, with their specs."""
    specs = {m: make_tiny_spec(m, H, W, D) for m in ("rgb", "ir")}
    for m, s in specs.items():
        make_thumbnail_onnx(folder / f"{m}.onnx", s)
    write_model_dir_specs(folder, specs)
    return folder


def render_street(folder: Path, people: int = 4, seconds: float = 8.0, fps: float = 10.0,
                  size: tuple[int, int] = (480, 640), ir: bool = True, **kw: Any) -> dict[str, Any]:
    """street.mp4, truth.json and gallery/ (2 colour crops per person) under ``folder``."""
    from runtime.watch.synthetic import make_gallery, make_walkers, write_video

    folder.mkdir(parents=True, exist_ok=True)
    walkers = make_walkers(people, duration=seconds)
    video = folder / "street.mp4"
    truth = write_video(video, walkers, seconds, fps, size, ir=ir, **kw)
    (folder / "truth.json").write_text(json.dumps(truth))
    gallery = folder / "gallery"
    make_gallery(gallery, walkers)
    return {"video": video, "truth": truth, "gallery": gallery, "walkers": walkers}
