"""`irreid-edge spec` and foreign models: an ONNX built here (no mean/std inside, no L2, BGR, or a
fixed batch) is described through the real CLI in a subprocess, opened with open_encoder, and its
embeddings are checked against a numpy reference computed by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.base.fileio import file_sha256
from runtime.encoder import open_encoder, sidecar_spec_path
from runtime.preprocess import load_batch
from runtime.spec import SpecError, read_spec_json

ROOT = Path(__file__).resolve().parents[2]
H, W, C, D = 32, 16, 6, 10
MEAN = (0.40, 0.45, 0.50)  # RGB, 0-1 units
STD = (0.20, 0.25, 0.30)


def make_foreign_onnx(path: Path, batch: int | str = "N", seed: int = 0) -> dict[str, np.ndarray]:
    """x (normalised, BGR) -> 1x1 Conv -> Relu -> GlobalAveragePool -> Flatten -> MatMul -> feat [N,D]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = {"conv_w": rng.normal(0, 1, (C, 3, 1, 1)).astype(np.float32),
         "conv_b": rng.normal(0, 0.1, (C,)).astype(np.float32),
         "fc_w": rng.normal(0, 1, (C, D)).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["input.1", "conv_w", "conv_b"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "fc_w"], ["feat"]),
    ]
    graph = helper.make_graph(
        nodes, "foreign", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, H, W])],
        [helper.make_tensor_value_info("feat", TensorProto.FLOAT, [batch, "D"])],
        [numpy_helper.from_array(v, k) for k, v in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return w


def reference(rgb: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """By hand: RGB raw -> BGR -> (x/255 - mean)/std in BGR order -> graph -> L2."""
    bgr = rgb[:, ::-1]
    mean = np.array(MEAN[::-1], np.float32).reshape(1, 3, 1, 1)
    std = np.array(STD[::-1], np.float32).reshape(1, 3, 1, 1)
    x = (bgr / 255.0 - mean) / std
    c = np.einsum("nchw,oc->nohw", x, w["conv_w"][:, :, 0, 0]) + w["conv_b"].reshape(1, C, 1, 1)
    f = np.maximum(c, 0).mean(axis=(2, 3)) @ w["fc_w"]  # (N, D)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import sys; from runtime.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def _spec_args(onnx: Path) -> list[str]:
    return ["spec", "--onnx", str(onnx), "--height", str(H), "--width", str(W), "--modality", "rgb",
            "--mean", *map(str, MEAN), "--std", *map(str, STD), "--bgr", "--no-l2", "--name", "foreign"]


def _images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(5)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + i, 20, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_foreign_round_trip_through_the_cli(tmp_path: Path) -> None:
    onnx = tmp_path / "osnet.onnx"
    w = make_foreign_onnx(onnx)
    res = run_cli(*_spec_args(onnx))
    assert res.returncode == 0, res.stderr
    spec = read_spec_json(sidecar_spec_path(onnx))
    assert (spec.embedding_dim, spec.channel_order, spec.normalize, spec.l2_normalized) == (D, "BGR", "preprocess", False)
    assert spec.onnx_sha256 == file_sha256(onnx)

    enc = open_encoder(onnx, "rgb", verbose=False)
    paths = _images(tmp_path / "imgs", 5)
    batch, good, errors = load_batch(paths, enc.spec)  # BGR raw pixels, as the spec says
    assert not errors and len(good) == 5
    rgb = np.stack([np.asarray(Image.open(p).convert("RGB").resize((W, H), Image.Resampling.BILINEAR),
                               np.float32).transpose(2, 0, 1) for p in paths])  # (N, 3, H, W)
    out = enc.embed(batch)
    np.testing.assert_allclose(out, reference(rgb, w), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_foreign_model_serves_both_modalities(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    make_foreign_onnx(onnx)
    assert run_cli(*_spec_args(onnx)).returncode == 0
    ir = open_encoder(onnx, "ir", verbose=False)
    rgb = open_encoder(onnx, "rgb", verbose=False)
    assert (ir.spec.modality, rgb.spec.modality) == ("ir", "rgb")
    assert ir.spec.fingerprint() != rgb.spec.fingerprint()


@pytest.mark.parametrize("static", [1, 4])
def test_fixed_batch_graph_is_split_and_padded(tmp_path: Path, static: int) -> None:
    onnx = tmp_path / "fixed.onnx"
    w = make_foreign_onnx(onnx, batch=static)
    assert run_cli(*_spec_args(onnx)).returncode == 0
    enc = open_encoder(onnx, "rgb", verbose=False)
    assert enc.max_batch == static
    rgb = np.random.default_rng(1).uniform(0, 255, (7, 3, H, W)).astype(np.float32)
    out = enc.embed(np.ascontiguousarray(rgb[:, ::-1]))  # 7 = split into static-size chunks, last padded
    np.testing.assert_allclose(out, reference(rgb, w), rtol=1e-4, atol=1e-5)


def test_mean_std_in_0_255_units_are_recognised(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    make_foreign_onnx(onnx)
    res = run_cli("spec", "--onnx", str(onnx), "--height", str(H), "--width", str(W),
                  "--mean", "123.675", "116.28", "103.53", "--std", "58.395", "57.12", "57.375")
    assert res.returncode == 0, res.stderr
    assert "0-255 units" in res.stderr
    spec = json.loads(sidecar_spec_path(onnx).read_text())
    np.testing.assert_allclose(spec["mean"], [0.485, 0.456, 0.406], atol=1e-6)
    assert spec["channel_order"] == "RGB" and spec["l2_normalized"] is True


def test_spec_refuses_a_wrong_size_and_a_missing_file(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    make_foreign_onnx(onnx)
    res = run_cli("spec", "--onnx", str(onnx), "--height", "64", "--width", str(W))
    assert res.returncode == 2
    assert "input height is 32, --height says 64; pass --height 32" in res.stderr
    res = run_cli("spec", "--onnx", str(tmp_path / "nope.onnx"), "--height", "1", "--width", "1")
    assert res.returncode == 2 and "not found" in res.stderr and "Traceback" not in res.stderr


def test_foreign_without_spec_says_how_to_write_one(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    make_foreign_onnx(onnx)
    with pytest.raises(SpecError, match="irreid-edge spec --onnx"):
        open_encoder(onnx, "rgb", verbose=False)


def test_stale_sidecar_is_refused(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    make_foreign_onnx(onnx, seed=0)
    assert run_cli(*_spec_args(onnx)).returncode == 0
    make_foreign_onnx(onnx, seed=1)  # the file changed after its spec was written
    with pytest.raises(SpecError, match="describes another file"):
        open_encoder(onnx, "rgb", verbose=False)
