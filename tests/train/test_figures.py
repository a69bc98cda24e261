"""The figures: each writes a valid PNG of the expected size, from tiny inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from train.evaluate.drawing import RankRow, activation_png, correlation_png, rank_list_png, stripes_png

H, W = 64, 32


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def _person(colour) -> np.ndarray:
    a = np.full((H, W, 3), colour, np.uint8)
    a[10:50, 10:22] = 255 - np.asarray(colour, np.uint8)
    return a


def test_rank_list_size_and_frame_colours(tmp_path):
    rows = [RankRow(_person((200, 40, 40)), 1, [(_person((200, 40, 40)), 1, 0.9), (_person((40, 40, 200)), 2, 0.5)]),
            RankRow(tmp_path / "probe.png", 2, [(_person((40, 40, 200)), 3, 0.7)] * 3, label="probe 2")]
    Image.fromarray(_person((40, 200, 40))).save(tmp_path / "probe.png")
    out = rank_list_png(rows, tmp_path / "r.png", top_k=3, tile_hw=(64, 32), border=3)
    # width = gap + tile + probe gap + k * (tile + gap); height = gap + rows * (tile + text + gap)
    assert _png(Path(out)) == (6 + 32 + 12 + 3 * (32 + 6), 6 + 2 * (64 + 14 + 6))
    im = np.asarray(Image.open(out).convert("RGB"))
    x_first = 6 + 32 + 12
    assert tuple(im[6 + 1, x_first + 1]) == (0, 170, 0)  # rank 1 of row 1: same id -> green
    assert tuple(im[6 + 1, x_first + 38 + 1]) == (220, 0, 0)  # rank 2: other id -> red
    with pytest.raises(ValueError, match="no rows"):
        rank_list_png([], tmp_path / "x.png")


def test_rank_list_wraps_a_long_probe_label_inside_its_column(tmp_path):
    # "id 10036000 cam1" is wider than a 64-px column: it used to run over rank 1's score.
    label = "id 10036000 cam1"
    rows = [RankRow(_person((200, 40, 40)), 1, [(_person((40, 40, 200)), 2, 0.5)] * 2, label=label)]
    out = rank_list_png(rows, tmp_path / "r.png", top_k=2, tile_hw=(128, 64), border=3)
    size = _png(Path(out))
    assert size[1] == 6 + (128 + 2 * 14 + 6)  # two caption lines
    im = np.asarray(Image.open(out).convert("RGB")).astype(int)
    x_first = 6 + 64 + 12
    captions = im[6 + 128 + 1:, :x_first]
    dark = (captions.sum(axis=2) < 200)
    assert dark[:14].any() and dark[14:].any()  # text on both lines, all left of rank 1's column
    # a label that fits stays on one line
    short = rank_list_png([RankRow(rows[0].probe, 1, rows[0].gallery, label="p1")], tmp_path / "s.png",
                          top_k=2, tile_hw=(128, 64), border=3)
    assert _png(Path(short))[1] == 6 + (128 + 14 + 6)


def test_activation_correlation_and_stripes_sizes(tmp_path):
    rng = np.random.default_rng(0)
    out = activation_png([_person((90, 90, 90))] * 3, [rng.random((8, 4)) for _ in range(3)],
                         [(0, 3), (2, 6), (5, 8)], tmp_path / "a.png", titles=["a", "b", "c"], dpi=50)
    assert _png(Path(out)) == (3 * 100, 180)
    out = correlation_png({"base": {"g1": [0.1, 0.3], "g2": [0.5]}, "dat": {"g1": [0.4], "g2": [0.8]}},
                          tmp_path / "c.png", dpi=50)
    assert _png(Path(out)) == (300, 180)
    out = stripes_png({"sysu all": [(3, 50.0, 48.0), (1, 40.0, 39.0)]}, tmp_path / "s.png", dpi=50)
    assert _png(Path(out)) == (300, 180)
    with pytest.raises(ValueError):
        activation_png([_person((1, 2, 3))], [], [(0, 1)], tmp_path / "bad.png")


def _result(path: Path, stripes: int, r1: float, data: str = "sysu") -> str:
    rows = [{"variant": "plain", "direction": "", "trial": 0, "r1": r1, "mAP": r1 - 2}]
    summary = [{"variant": "plain", "direction": "", "trials": 1, "mean": {"r1": r1, "mAP": r1 - 2},
                "std": {"r1": 0.0, "mAP": 0.0}},
               {"variant": "flip", "direction": "", "trials": 1, "mean": {"r1": 99.0}, "std": {"r1": 0.0}}]
    path.write_text(json.dumps({"format": "irreid-edge-evaluation", "data": data, "mode": "all", "protocol": "sysu",
                                "model": {"stripes": stripes}, "rows": rows, "summary": summary}))
    return str(path)


def test_figures_stripes_cli(tmp_path):
    from train.evaluate.figures import main, stripe_points

    files = [_result(tmp_path / f"r{n}.json", n, 40.0 + n) for n in (1, 3, 6)]
    assert stripe_points(files) == {"sysu all": [(1, 41.0, 39.0), (3, 43.0, 41.0), (6, 46.0, 44.0)]}
    assert main(["stripes", *files, "--out", str(tmp_path / "s.png")]) == 0
    assert _png(tmp_path / "s.png") == (600, 360)
    (tmp_path / "bad.json").write_text("{}")
    assert main(["stripes", str(tmp_path / "bad.json"), "--out", str(tmp_path / "t.png")]) == 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    from runtime.spec import ModelSpec
    from train.checkpoint import save_checkpoint
    from train.data.synthetic import generate
    from train.models import create_model

    base = tmp_path_factory.mktemp("pic")
    generate(base / "syn", ids=5, seed=0, height=H, width=W, min_per_cam=2, max_per_cam=2, test_ids=3, val_ids=1)
    torch.manual_seed(0)
    kwargs = {"num_classes": 2, "stripes": 2, "embed_dim": 8, "pretrained": "none"}
    spec = {m: ModelSpec(name="t", modality=m, input_height=H, input_width=W, embedding_dim=16, stripes=2).to_dict()
            for m in ("rgb", "ir")}
    save_checkpoint(base / "ck.pt", {"model": create_model("dat_resnet18", **kwargs).state_dict(),
                                     "model_kwargs": {"name": "dat_resnet18", "kwargs": kwargs},
                                     "config": {}, "num_classes": 2, "spec": spec})
    return base


def test_figures_from_a_checkpoint(tiny, capsys):
    from train.evaluate.figures import main

    ck, root = str(tiny / "ck.pt"), str(tiny / "syn")
    assert main(["activations", "--checkpoint", ck, "--root", root, "--count", "2", "--out", str(tiny / "a.png")]) == 0
    assert _png(tiny / "a.png") == (4 * 200, 360)  # 2 people x (IR, colour)
    assert main(["correlation", "--checkpoint", ck, "--root", root, "--pairs", "4", "--out", str(tiny / "c.png")]) == 0
    assert _png(tiny / "c.png") == (600, 360)
    printed = capsys.readouterr().out
    assert "g1" in printed and "g4" in printed
    img = str(next((tiny / "syn" / "cam3").rglob("*.jpg")))
    assert main(["activations", "--checkpoint", ck, "--images", img, "--out", str(tiny / "b.png")]) == 0
    assert _png(tiny / "b.png") == (200, 360)
