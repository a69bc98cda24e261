"""RegDB and Market-1501 readers on trees the tests write, plus the real Market dev copy when present."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from train.data import build_dataset
from train.data.market import parse_name, read_market
from train.data.records import IR, RGB, DataLayoutError
from train.data.regdb import read_regdb, test_split


def test_regdb_train_and_test_per_trial(regdb_root: Path) -> None:
    train = read_regdb(regdb_root, 1, "train")
    test = read_regdb(regdb_root, 1, "test")
    assert {r.pid for r in train} == {1, 2} and {r.pid for r in test} == {0, 3}
    assert len(train) == len(test) == 8
    for r in train + test:
        assert Path(r.path).is_file()
        assert (r.modality, r.camid) == ((RGB, 1) if "/Visible/" in r.path else (IR, 2))
    assert {r.pid for r in read_regdb(regdb_root, 2, "train")} == {2, 3}


def test_regdb_directions(regdb_root: Path) -> None:
    q, g = test_split(regdb_root, 1, "v2t")
    assert {r.modality for r in q} == {RGB} and {r.modality for r in g} == {IR}
    q2, g2 = test_split(regdb_root, 1, "t2v")
    assert q2 == g and g2 == q
    with pytest.raises(ValueError, match="valid: v2t, t2v"):
        test_split(regdb_root, 1, "rgb2ir")


def test_regdb_malformed(regdb_root: Path) -> None:
    with pytest.raises(DataLayoutError, match=r"idx/train_visible_5\.txt missing: .*trials found: 1, 2"):
        read_regdb(regdb_root, 5)
    listed = regdb_root / "idx" / "test_thermal_1.txt"
    first = listed.read_text().splitlines()[0].split()[0]
    (regdb_root / first).unlink()
    with pytest.raises(DataLayoutError, match=r"\.bmp missing: listed in .*test_thermal_1\.txt:1"):
        read_regdb(regdb_root, 1, "test")
    (regdb_root / "idx" / "train_visible_2.txt").write_text("Visible/1/x.bmp\n")
    with pytest.raises(DataLayoutError, match=r"train_visible_2\.txt:1: expected 'relative/path label'"):
        read_regdb(regdb_root, 2)
    shutil.rmtree(regdb_root / "Thermal")
    with pytest.raises(DataLayoutError, match=r"Thermal missing: expected RegDB layout"):
        read_regdb(regdb_root, 1)
    with pytest.raises(ValueError, match="valid: train, test"):
        read_regdb(regdb_root, 1, "val")


def test_market_name_parsing() -> None:
    assert parse_name("0002_c1s1_000451_03.jpg") == (2, 1)
    assert parse_name("-1_c3s2_012345_00.jpg") == (-1, 3)
    with pytest.raises(ValueError, match="not a Market-1501 file name"):
        parse_name("person.jpg")


def test_market_flat_layout_junk_distractors_and_pseudo_ir(market_root: Path) -> None:
    train = read_market(market_root, "train")
    assert [(r.pid, r.camid, r.modality, r.pseudo_ir) for r in train] == [
        (2, 1, RGB, None), (2, 4, IR, "red"), (7, 2, RGB, None), (7, 6, IR, "red"), (10, 5, IR, "red")]
    gallery = read_market(market_root, "gallery", pseudo_ir="gray")
    assert -1 not in {r.pid for r in gallery} and 0 in {r.pid for r in gallery}  # junk out, distractors kept
    assert {r.pseudo_ir for r in gallery if r.modality == IR} == {"gray"}
    query = read_market(market_root, "query", ir_cams=())
    assert {r.modality for r in query} == {RGB} and len(query) == 3
    assert [r.modality for r in read_market(market_root, "train", ir_cams=(1, 2, 3))] == [IR, RGB, IR, RGB, RGB]


def test_market_per_identity_folders_read_the_same(market_root: Path, tmp_path: Path) -> None:
    per_id = tmp_path / "prepared" / "pytorch"
    for src, dst in (("bounding_box_train", "train_all"), ("query", "query"), ("bounding_box_test", "gallery")):
        for f in (market_root / src).iterdir():
            pid = f.name.split("_")[0]
            (per_id / dst / pid).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, per_id / dst / pid / f.name)
    for split in ("train", "query", "gallery"):
        flat = [(r.pid, r.camid, r.modality, Path(r.path).name) for r in read_market(market_root, split)]
        folders = [(r.pid, r.camid, r.modality, Path(r.path).name) for r in read_market(tmp_path / "prepared", split)]
        assert sorted(folders) == sorted(flat)


def test_market_malformed(market_root: Path) -> None:
    shutil.rmtree(market_root / "query")
    with pytest.raises(DataLayoutError, match=r"query missing: expected Market-1501 folder query"):
        read_market(market_root, "query")
    (market_root / "bounding_box_train" / "0002_c1s1_000451_03.jpg").rename(market_root / "bounding_box_train" / "img.jpg")
    with pytest.raises(DataLayoutError, match=r"img\.jpg: not a Market-1501 file name"):
        read_market(market_root, "train")
    (market_root / "bounding_box_train" / "img.jpg").rename(market_root / "bounding_box_train" / "0002_c7s1_000451_03.jpg")
    with pytest.raises(DataLayoutError, match=r"camera c7 outside"):
        read_market(market_root, "train")
    with pytest.raises(ValueError, match="valid: red, gray, thermal"):
        read_market(market_root, pseudo_ir="infrared")
    with pytest.raises(ValueError, match="ir_cams must be Market-1501 cameras"):
        read_market(market_root, ir_cams=(0, 4))


def test_market_real_dev_copy_loads(market_dev_root: Path) -> None:
    records = read_market(market_dev_root, "train")
    assert len(records) > 9000 and len({r.pid for r in records}) == 500
    assert {r.camid for r in records if r.modality == IR} == {4, 5, 6}
    assert all(r.pseudo_ir == "red" for r in records if r.modality == IR)


def test_build_dataset_registry(sysu_root: Path, regdb_root: Path, market_root: Path) -> None:
    assert {r.pid for r in build_dataset("sysu", sysu_root)} == {1, 2, 3, 5, 7, 8}  # trainval
    assert {r.pid for r in build_dataset("synthetic", sysu_root, "train")} == {1, 2, 3, 5}
    assert len(build_dataset("regdb", regdb_root, trial=2)) == 8
    assert len(build_dataset("market", market_root, ir_cams=())) == 5
    with pytest.raises(ValueError, match="unknown dataset 'duke'; valid: sysu, regdb, market, synthetic"):
        build_dataset("duke", sysu_root)
