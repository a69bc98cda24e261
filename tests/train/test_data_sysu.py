"""SYSU-MM01 reader and the community's test split, on trees the tests write (tests/train/conftest.py)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from train.data.records import IR, RGB, DataLayoutError
from train.data.sysu import read_sysu, test_split


def reference_split(data_path: str, mode: str, trial: int) -> tuple[list, list]:
    """The AGW/DDAG/CAJ data_manager.py algorithm, string offsets and global random state included."""
    gallery_cams = ["cam1", "cam2", "cam4", "cam5"] if mode == "all" else ["cam1", "cam2"]
    with open(os.path.join(data_path, "exp/test_id.txt")) as f:
        ids = [f"{int(y):04d}" for y in f.read().splitlines()[0].split(",")]
    queries, gallery = [], []
    for pid in sorted(ids):
        for cam in ["cam3", "cam6"]:
            d = os.path.join(data_path, cam, pid)
            if os.path.isdir(d):
                queries.extend(sorted(d + "/" + n for n in os.listdir(d)))
    random.seed(trial)
    for pid in sorted(ids):
        for cam in gallery_cams:
            d = os.path.join(data_path, cam, pid)
            if os.path.isdir(d):
                gallery.append(random.choice(sorted(d + "/" + n for n in os.listdir(d))))

    def parse(paths: list[str]) -> list[tuple[str, int, int]]:
        return [(p, int(p[-13:-9]), int(p[-15])) for p in paths]

    return parse(queries), parse(gallery)


def as_tuples(records: list) -> list[tuple[str, int, int]]:
    return [(r.path, r.pid, r.camid) for r in records]


@pytest.mark.parametrize("mode", ["all", "indoor"])
@pytest.mark.parametrize("trial", [0, 1, 7])
def test_single_shot_matches_reference_code(sysu_root: Path, mode: str, trial: int) -> None:
    state = random.getstate()
    try:
        ref_q, ref_g = reference_split(str(sysu_root), mode, trial)
    finally:
        random.setstate(state)
    q, g = test_split(str(sysu_root), mode=mode, trial=trial)
    assert as_tuples(q) == ref_q
    assert as_tuples(g) == ref_g
    assert {r.modality for r in q} == {IR} and {r.modality for r in g} == {RGB}


def test_indoor_still_queries_with_cam6_and_galleries_only_cams_1_2(sysu_root: Path) -> None:
    q, g = test_split(sysu_root, mode="indoor")
    assert {r.camid for r in q} == {3, 6}
    assert {r.camid for r in g} == {1, 2}
    _, g_all = test_split(sysu_root, mode="all")
    assert {r.camid for r in g_all} == {1, 2, 4, 5}


def test_gallery_has_one_image_per_existing_id_camera(sysu_root: Path, sysu_spec) -> None:
    splits, counts = sysu_spec
    _, g = test_split(sysu_root, mode="all", trial=3)
    expected = [(pid, c) for pid in sorted(splits["test"]) for c in (1, 2, 4, 5) if counts(pid)[c]]
    assert [(r.pid, r.camid) for r in g] == expected


def test_trials_differ_and_global_random_state_is_untouched(sysu_root: Path) -> None:
    random.seed(1234)
    before = random.random()
    random.seed(1234)
    test_split(sysu_root, trial=0)
    assert random.random() == before
    galleries = {tuple(r.path for r in test_split(sysu_root, trial=t)[1]) for t in range(5)}
    assert len(galleries) > 1


def test_multi_shot_takes_up_to_ten_distinct_images(sysu_root: Path, sysu_spec) -> None:
    sysu_counts = sysu_spec[1]
    _, g = test_split(sysu_root, mode="all", trial=0, shots=10)
    by_key: dict[tuple[int, int], list[str]] = {}
    for r in g:
        by_key.setdefault((r.pid, r.camid), []).append(r.path)
    for (pid, cam), paths in by_key.items():
        assert len(paths) == len(set(paths)) == min(10, sysu_counts(pid)[cam])
    assert len(by_key[(20, 1)]) == 10  # 12 images there
    assert [r.path for r in test_split(sysu_root, shots=10, trial=0)[1]] == [r.path for r in g]


def test_empty_folder_is_skipped_and_refusals(sysu_root: Path) -> None:
    (sysu_root / "cam4" / "0101").mkdir(exist_ok=True)
    for f in (sysu_root / "cam4" / "0101").iterdir():
        f.unlink()
    _, g = test_split(sysu_root)
    assert (101, 4) not in {(r.pid, r.camid) for r in g}
    with pytest.raises(ValueError, match="valid: all, indoor"):
        test_split(sysu_root, mode="outdoor")
    with pytest.raises(ValueError, match="shots must be 1"):
        test_split(sysu_root, shots=5)


@pytest.mark.parametrize("split", ["train", "val", "test", "trainval"])
def test_read_sysu_splits(sysu_root: Path, sysu_spec, split: str) -> None:
    splits, sysu_counts = sysu_spec
    ids = splits["train"] + splits["val"] if split == "trainval" else splits[split]
    records = read_sysu(sysu_root, split)
    assert sorted({r.pid for r in records}) == sorted(ids)
    assert len(records) == sum(n for pid in ids for n in sysu_counts(pid).values())
    for r in records:
        assert r.modality == (IR if r.camid in (3, 6) else RGB)
        assert Path(r.path).parent.name == f"{r.pid:04d}" and Path(r.path).parent.parent.name == f"cam{r.camid}"


def test_missing_id_file_names_it(sysu_root: Path) -> None:
    (sysu_root / "exp" / "train_id.txt").unlink()
    with pytest.raises(DataLayoutError, match=r"exp/train_id\.txt missing: expected SYSU-MM01 layout"):
        read_sysu(sysu_root, "train")


def test_missing_camera_folder_names_it(sysu_root: Path) -> None:
    (sysu_root / "cam4").rename(sysu_root / "camera4")
    with pytest.raises(DataLayoutError, match=r"cam4 missing"):
        read_sysu(sysu_root, "train")
    with pytest.raises(DataLayoutError, match=r"cam4 missing"):
        test_split(sysu_root)


def test_malformed_id_file_and_absent_ids(sysu_root: Path) -> None:
    (sysu_root / "exp" / "val_id.txt").write_text("7; 8\n")
    with pytest.raises(DataLayoutError, match=r"val_id\.txt: expected one line of comma-separated integer ids"):
        read_sysu(sysu_root, "val")
    (sysu_root / "exp" / "val_id.txt").write_text("7,999\n")
    with pytest.raises(DataLayoutError, match=r"id 999 of split 'val' has no image"):
        read_sysu(sysu_root, "val")
    (sysu_root / "exp" / "val_id.txt").write_text("\n")
    with pytest.raises(DataLayoutError, match="no ids listed"):
        read_sysu(sysu_root, "val")
    with pytest.raises(ValueError, match="valid: train, val, test, trainval"):
        read_sysu(sysu_root, "query")
    with pytest.raises(DataLayoutError, match="missing: expected the SYSU-MM01 root"):
        read_sysu(sysu_root / "nope")
