from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from calib.batches import CalibBatches, TooFewImagesWarning
from calib.images import label_image, scan_folders, split_held_out, stratified_sample
from runtime.spec import ModelSpec


def _img(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 8, 3), value, np.uint8)).save(path)


def test_labels_from_layouts(tmp_path: Path) -> None:
    assert label_image(tmp_path / "cam3/0007/0001.jpg", tmp_path) .modality == "ir"
    assert label_image(tmp_path / "cam1/0007/0001.jpg", tmp_path).identity == "0007"
    assert label_image(tmp_path / "Thermal/12/x.bmp", tmp_path).modality == "ir"
    market = label_image(tmp_path / "bounding_box_train/0042_c3s1_000151_01.jpg", tmp_path)
    assert (market.modality, market.identity) == ("rgb", "0042")


def _sysu(tmp_path: Path, ids: int, per: int) -> Path:
    for pid in range(1, ids + 1):
        for cam in (1, 3):
            for k in range(per):
                _img(tmp_path / f"cam{cam}/{pid:04d}/{k:04d}.jpg", 10 * k + pid)
    return tmp_path


def test_stratified_over_modality_and_identity(tmp_path: Path) -> None:
    images = scan_folders([_sysu(tmp_path, ids=5, per=4)])
    assert len(images) == 40
    chosen = stratified_sample(images, 10, seed=0)
    assert Counter(im.modality for im in chosen) == {"rgb": 5, "ir": 5}
    for m in ("rgb", "ir"):  # 5 per modality over 5 ids: one each, not the first folder's 4
        assert len({im.identity for im in chosen if im.modality == m}) == 5
    assert stratified_sample(images, 10, seed=0) == chosen  # deterministic
    held = split_held_out(images, chosen, 8)
    assert not {im.path for im in held} & {im.path for im in chosen}


def test_one_modality_gives_its_share_to_the_other(tmp_path: Path) -> None:
    for k in range(6):
        _img(tmp_path / f"photos/p{k}/a.jpg")
    assert len(stratified_sample(scan_folders([tmp_path]), 4)) == 4


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--calib"):
        scan_folders([tmp_path / "nope"])


def test_corrupt_images_skipped_and_counted(tmp_path: Path) -> None:
    _sysu(tmp_path, ids=2, per=2)
    (tmp_path / "cam1/0001/bad.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "cam1/0002/empty.jpg").write_bytes(b"")
    images = scan_folders([tmp_path])
    spec = ModelSpec(name="t", modality="rgb", input_height=16, input_width=8, embedding_dim=4)
    batches = CalibBatches(images, spec, batch_size=3)
    with pytest.warns(TooFewImagesWarning, match="only 8 usable"):
        got = list(batches)
    assert sum(len(b) for b in got) == 8 and batches.used == 8
    assert len(batches.skipped) == 2 and batches.summary()["skipped"] == 2
    assert all(b.dtype == np.float32 and b.shape[1:] == (3, 16, 8) for b in got)
    assert sum(len(b) for b in batches) == 8  # re-iterable (two-pass range methods), from the cache
