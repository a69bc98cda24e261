"""python -m train.evaluate end to end: a tiny random checkpoint on a tiny generated synthetic dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.spec import ModelSpec
from train.evaluate.cli import main, summarize

ROOT = Path(__file__).resolve().parents[2]
H, W = 64, 32


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    from train.data.synthetic import generate

    out = tmp_path_factory.mktemp("syn")
    generate(out, ids=6, seed=0, height=H, width=W, min_per_cam=2, max_per_cam=2, test_ids=4, val_ids=1)
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import torch

    from train.checkpoint import save_checkpoint
    from train.models import create_model

    torch.manual_seed(0)
    kwargs = {"num_classes": 4, "stripes": 3, "embed_dim": 16, "pretrained": "none"}
    model = create_model("dat_resnet18", **kwargs)
    spec = {m: ModelSpec(name="dat_resnet18", modality=m, input_height=H, input_width=W, embedding_dim=48,
                         stripes=3).to_dict() for m in ("rgb", "ir")}
    path = tmp_path_factory.mktemp("run") / "checkpoint.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_kwargs": {"name": "dat_resnet18", **kwargs},
                           "config": {}, "num_classes": 4, "spec": spec})
    return path


def test_cli_sysu_protocol_with_flip_rerank_and_rank_list(synthetic_root, checkpoint, tmp_path, capsys):
    out = tmp_path / "res.json"
    png = tmp_path / "ranks.png"
    rc = main(["--checkpoint", str(checkpoint), "--data", "synthetic", "--root", str(synthetic_root),
               "--trials", "2", "--flip", "--rerank", "--out", str(out), "--rank-list", str(png),
               "--rank-list-probes", "3", "--top-k", "5", "--batch", "16"])
    assert rc == 0
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["format"] == "irreid-edge-evaluation" and res["protocol"] == "sysu"
    assert res["variants"] == ["plain", "flip", "rerank", "flip+rerank"]
    assert len(res["rows"]) == 2 * 4
    assert {r["trial"] for r in res["rows"]} == {0, 1}
    for r in res["rows"]:
        assert 0 <= r["r1"] <= r["r5"] <= r["r10"] <= r["r20"] <= 100 and 0 < r["mAP"] <= 100
    assert [s["variant"] for s in res["summary"]] == res["variants"]
    assert res["model"]["stripes"] == 3
    for label in ("plain", "flip", "rerank", "flip+rerank", "mean"):
        assert label in printed
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 5 * W and im.size[1] > 3 * 64


def test_single_query_set_embedded_once(synthetic_root, checkpoint, tmp_path):
    from train.data.sysu import test_split
    from train.evaluate.features import FeatureCache, TorchEmbedder
    from train.evaluate.protocols import evaluate_trial, iter_trials

    emb = TorchEmbedder.from_checkpoint(checkpoint)
    calls = []
    real = emb.embed
    emb.embed = lambda x, m: calls.append(len(x)) or real(x, m)  # count images through the model
    cache = FeatureCache(emb, batch_size=1000)
    queries, _ = test_split(synthetic_root, trial=0)
    results = [evaluate_trial(cache, t, ["plain"]) for t in iter_trials("synthetic", synthetic_root, trials=4)]
    assert len(results) == 4
    gallery_union = {r.path for t in iter_trials("synthetic", synthetic_root, trials=4) for r in t.gallery}
    assert sum(calls) == len(queries) + len(gallery_union)
    # features are L2-normalised and deterministic
    f = cache.get(queries)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-5)


def test_summarize_mean_std():
    rows = [{"variant": "plain", "direction": "v2t", "trial": t, "r1": v, "mAP": v / 2} for t, v in ((1, 10.0), (2, 20.0))]
    (s,) = summarize(rows)
    assert s["mean"] == {"r1": 15.0, "mAP": 7.5} and s["std"] == {"r1": 5.0, "mAP": 2.5} and s["trials"] == 2


def test_errors_are_one_line(tmp_path, checkpoint):
    proc = subprocess.run([sys.executable, "-m", "train.evaluate", "--checkpoint", str(checkpoint), "--data", "sysu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--root" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "train.evaluate", "--checkpoint", str(tmp_path / "nope.pt"),
                           "--root", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "nope.pt" in proc.stderr


# --- the exported-model path (runtime.encoder, ONNX Runtime) on RegDB and Market-1501 trees ---
@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    from tiny_onnx import make_tiny_onnx, make_tiny_spec

    from runtime.model_dir import model_file, write_model_dir_specs

    out = tmp_path_factory.mktemp("export")
    specs = {}
    for seed, m in enumerate(("rgb", "ir")):
        specs[m] = make_tiny_spec(m, height=32, width=16, dim=24)
        make_tiny_onnx(model_file(out, m), specs[m], seed=seed)
    write_model_dir_specs(out, specs)
    return out


def _img(path: Path, pid: int, k: int) -> None:
    rng = np.random.default_rng(pid * 100 + k)
    a = (rng.random((4, 2, 3)) * 255).astype(np.uint8)  # a per-identity pattern, upscaled, plus noise
    a = np.asarray(Image.fromarray(a).resize((16, 32), Image.Resampling.NEAREST), np.float32)
    a += np.random.default_rng(k).normal(0, 8, a.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(path)


def test_onnx_regdb_both_directions_per_trial(onnx_dir, tmp_path):
    root = tmp_path / "RegDB"
    for trial in (1, 2):
        for split in ("train", "test"):
            for name, folder in (("visible", "Visible"), ("thermal", "Thermal")):
                lines = []
                for pid in range(trial, trial + 3):
                    for k in range(2):
                        rel = f"{folder}/{pid}/{name}_{k}.bmp"
                        _img(root / rel, pid, k)
                        lines.append(f"{rel} {pid}")
                (root / "idx").mkdir(exist_ok=True)
                (root / "idx" / f"{split}_{name}_{trial}.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "regdb.json"
    assert main(["--onnx", str(onnx_dir), "--data", "regdb", "--root", str(root), "--trials", "2",
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [(r["trial"], r["direction"]) for r in res["rows"]] == [(1, "v2t"), (1, "t2v"), (2, "v2t"), (2, "t2v")]
    assert [s["direction"] for s in res["summary"]] == ["v2t", "t2v"]
    assert res["protocol"] == "regdb" and res["model"]["embedding_dim"] == 24
    assert all(r["queries"] == 6 and r["gallery"] == 6 for r in res["rows"])


def test_onnx_market_with_pseudo_ir_queries(onnx_dir, tmp_path):
    root = tmp_path / "Market"
    for pid in (1, 2, 3):
        _img(root / "query" / f"{pid:04d}_c4s1_000001_00.jpg", pid, 0)  # cam 4: pseudo-IR
        _img(root / "bounding_box_test" / f"{pid:04d}_c1s1_000002_00.jpg", pid, 1)
        _img(root / "bounding_box_test" / f"{pid:04d}_c4s1_000003_00.jpg", pid, 2)  # same id, same cam: removed
    _img(root / "bounding_box_test" / "0000_c2s1_000004_00.jpg", 9, 3)  # a distractor
    out = tmp_path / "market.json"
    assert main(["--onnx", str(onnx_dir), "--data", "market-query", "--root", str(root), "--trials", "1",
                 "--flip", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["variant"] for r in res["rows"]] == ["plain", "flip"]
    assert res["rows"][0]["queries"] == 3 and res["rows"][0]["gallery"] == 7
    assert res["rows"][0]["num_valid"] == 3
