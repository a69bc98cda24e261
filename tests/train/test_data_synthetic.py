"""The synthetic generator: exact SYSU-MM01 layout, determinism, modalities, CLI, refusals."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from train.data.synthetic import generate, main
from train.data.synthetic_render import render, sample_identity
from train.data.sysu import read_sysu, test_split

SMALL = {"ids": 10, "height": 64, "width": 32, "min_per_cam": 1, "max_per_cam": 2, "test_ids": 3, "val_ids": 2}
ROOT = Path(__file__).resolve().parents[2]


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_is_sysu_mm01(tmp_path: Path) -> None:
    info = generate(tmp_path / "syn", seed=0, **SMALL)
    root = tmp_path / "syn"
    assert sorted(p.name for p in root.iterdir()) == [*(f"cam{c}" for c in range(1, 7)), "exp", "synthetic.json"]
    splits = {}
    for name in ("train", "val", "test"):
        lines = (root / "exp" / f"{name}_id.txt").read_text().splitlines()
        assert len(lines) == 1
        splits[name] = [int(x) for x in lines[0].split(",")]
    assert [len(splits[n]) for n in ("train", "val", "test")] == [5, 2, 3]
    assert sorted(pid for ids in splits.values() for pid in ids) == list(range(1, 11))
    files = sorted(root.glob("cam*/*/*.jpg"))
    assert len(files) == info["images"]
    for f in files:
        assert len(f.parent.name) == 4 and len(f.stem) == 4  # cam<c>/<pid:04d>/<n:04d>.jpg
    records = read_sysu(root, "trainval")
    assert {r.pid for r in records} == set(splits["train"] + splits["val"])
    for pid in {r.pid for r in records}:  # every id seen by both modalities
        assert {r.modality for r in records if r.pid == pid} == {0, 1}
    q, g = test_split(root, "all", 0)
    assert {r.pid for r in q} == {r.pid for r in g} == set(splits["test"])


def test_modalities_look_right(tmp_path: Path) -> None:
    generate(tmp_path / "syn", seed=1, **SMALL)
    for r in read_sysu(tmp_path / "syn", "test"):
        a = np.asarray(Image.open(r.path)).astype(int)
        assert a.shape == (64, 32, 3)
        spread = np.abs(a - a.mean(2, keepdims=True)).mean()
        assert (spread < 2.0) if r.modality == 1 else (spread > 5.0), r.path  # IR grey (JPEG), colour not


def test_deterministic_per_seed(tmp_path: Path) -> None:
    generate(tmp_path / "a", seed=7, **SMALL)
    generate(tmp_path / "b", seed=7, **SMALL)
    generate(tmp_path / "c", seed=8, **SMALL)
    da, db, dc = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert da == db
    assert da != dc
    # an image depends only on (seed, pid, camera, shot), not on how many ids are generated
    p = sample_identity(7, 4)
    assert p == sample_identity(7, 4) != sample_identity(8, 4)
    assert np.array_equal(render(p, 3, 1, 7, 64, 32), render(p, 3, 1, 7, 64, 32))


def test_rerun_is_a_no_op_and_foreign_folders_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    assert "images" in generate(out, seed=0, **SMALL)
    assert "images" not in generate(out, seed=0, **SMALL)  # already there
    assert "images" in generate(out, seed=0, overwrite=True, **SMALL)
    changed = {**SMALL, "ids": 12}
    generate(out, seed=0, **changed)  # other parameters: regenerated in place (it is ours)
    assert len((out / "exp" / "train_id.txt").read_text().split(",")) + 2 + 3 == 12
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="not empty and not a synthetic dataset"):
        generate(foreign, seed=0, **SMALL)
    with pytest.raises(ValueError, match="must fit in ids"):
        generate(tmp_path / "x", ids=3, test_ids=3, val_ids=1)


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "train.data.synthetic", "--out", str(out), "--ids", "4", "--seed", "2",
           "--height", "64", "--width", "32", "--min-per-cam", "1", "--max-per-cam", "1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "images of 4 ids" in done.stdout
    assert len(list(out.glob("cam*/*/*.jpg"))) >= 8
    assert main(["--out", str(out), "--ids", "0"]) == 2


def test_default_style_is_generator_version_1() -> None:
    """Style() must leave version-1 datasets bit-identical (caches made before styles existed stay valid)."""
    from train.data.synthetic_render import Style

    p = sample_identity(0, 5)
    for cam in (1, 3):
        assert np.array_equal(render(p, cam, 1, 0, 64, 32), render(p, cam, 1, 0, 64, 32, Style()))


def test_ir_dye_ties_ir_intensity_to_the_dye() -> None:
    """With ir_dye=1 a dark-dyed garment is dark in IR whatever its material; with 0 the dye is irrelevant."""
    from train.data.synthetic_render import LUMA, MATERIALS, UPPER, _person_table
    from train.data.synthetic_render import sample_identity as sample

    for pid in range(1, 30):
        p = sample(0, pid)
        colour, material = p.upper[0], p.upper[1]
        assert _person_table(p, MATERIALS, 0.9, 0.3, 0.0)[UPPER] == pytest.approx(MATERIALS[material])
        assert _person_table(p, MATERIALS, 0.9, 0.3, 0.0, ir_dye=1.0)[UPPER] == pytest.approx(LUMA[colour])


def test_style_options_are_recorded_validated_and_change_the_images(tmp_path: Path) -> None:
    import json

    small = {**SMALL, "ids": 6, "test_ids": 2, "val_ids": 1}
    generate(tmp_path / "v1", seed=0, **small)
    generate(tmp_path / "styled", seed=0, mark_scale=2.0, ir_dye=0.8, clutter=0.5, **small)
    v1 = json.loads((tmp_path / "v1" / "synthetic.json").read_text())["config"]
    styled = json.loads((tmp_path / "styled" / "synthetic.json").read_text())["config"]
    assert "ir_dye" not in v1  # default styles keep the version-1 metadata
    assert (styled["mark_scale"], styled["ir_dye"], styled["clutter"]) == (2.0, 0.8, 0.5)
    a, b = digest(tmp_path / "v1"), digest(tmp_path / "styled")
    assert a.keys() - {"synthetic.json"} == b.keys() - {"synthetic.json"}  # same ids, cameras and shots
    assert sum(a[k] != b[k] for k in a if k.endswith(".jpg")) > 0.9 * sum(k.endswith(".jpg") for k in a)
    with pytest.raises(ValueError, match="ir_dye"):
        generate(tmp_path / "bad", ir_dye=1.5, **small)


def test_colour_histogram_matcher_fails_across_modalities(tmp_path: Path) -> None:
    """The matcher the demo's score is compared with: fine within colour, near chance from IR."""
    from train.evaluate.baselines import colour_histograms, rank1, sysu_histogram_rank1

    root = tmp_path / "syn"
    generate(root, seed=0, ids=24, height=64, width=32, min_per_cam=2, max_per_cam=3, test_ids=20, val_ids=0)
    ir = sysu_histogram_rank1(root, trials=3)
    _, gallery = test_split(root, "all", 0)
    colour = [r for r in read_sysu(root, "test") if r.modality == 0]
    feats = dict(zip([r.path for r in colour], colour_histograms([r.path for r in colour])))
    rgb = rank1(np.stack([feats[r.path] for r in colour]), np.stack([feats[r.path] for r in gallery]),
                colour, gallery, "same_cam")
    assert 0.0 <= ir <= 0.25  # 20 ids: chance is 5%
    assert rgb > ir + 0.1
