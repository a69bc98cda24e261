"""Transforms (eval == runtime preprocessing, exactly) and ReIDDataset, with a real DataLoader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runtime.preprocess import ImageDecodeError, decode_image, preprocess_image
from train.data.dataset import ReIDDataset
from train.data.market import read_market
from train.data.records import IR, RGB, Record
from train.data.sampler import CrossModalPKSampler
from train.data.sysu import read_sysu
from train.data.transforms import apply_pseudo_ir, build_eval_transform, build_train_transform


def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (37, 19, 3), dtype=np.uint8))
    return [rgb, rgb.convert("L"), rgb.convert("RGBA"), Image.fromarray(rng.integers(0, 256, (32, 16, 3), dtype=np.uint8))]


@pytest.mark.parametrize("index", range(4))
def test_eval_transform_is_runtime_preprocessing(index: int) -> None:
    im = images()[index]
    x = build_eval_transform(32, 16)(im)
    assert x.dtype == torch.float32 and x.shape == (3, 32, 16)
    assert np.array_equal(x.numpy(), preprocess_image(im, 32, 16))
    plain = build_train_transform(32, 16, flip=0.0, erasing=0.0, channel_aug=0.0)(im)
    assert torch.equal(plain, x)  # no augmentation = the runtime's pixels, raw 0-255


def test_train_augmentations() -> None:
    im = images()[0]
    base = build_eval_transform(32, 16)(im)
    torch.manual_seed(0)
    assert torch.equal(build_train_transform(32, 16, flip=1.0, erasing=0.0)(im), base.flip(2))
    erased = build_train_transform(32, 16, flip=0.0, erasing=1.0)(im)
    changed = (erased != base).any(0)
    rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
    assert changed.sum() > 0 and changed.sum() <= (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert erased.min() >= 0 and erased.max() <= 255 and torch.equal(erased, erased.round())
    for _ in range(8):
        c = build_train_transform(32, 16, flip=0.0, erasing=0.0, channel_aug=1.0)(im)
        assert torch.equal(c[0], c[1]) and torch.equal(c[1], c[2])
    padded = build_train_transform(32, 16, flip=0.0, erasing=0.0, pad=4)(im)
    assert padded.shape == (3, 32, 16)
    with pytest.raises(ValueError, match="flip must be a probability"):
        build_train_transform(32, 16, flip=1.5)


def test_pseudo_ir_conversions() -> None:
    im = images()[0]
    red = np.asarray(apply_pseudo_ir(im, "red"))
    assert (red == np.asarray(im)[:, :, :1]).all()
    gray = np.asarray(apply_pseudo_ir(im, "gray"))
    assert (gray == np.asarray(im.convert("L"))[:, :, None]).all()
    with pytest.raises(ValueError, match="valid: red, gray"):
        apply_pseudo_ir(im, "blue")


def test_dataset_labels_modalities_and_pseudo_ir(market_root: Path) -> None:
    records = read_market(market_root, "train")
    ds = ReIDDataset(records, build_eval_transform(16, 8))
    assert ds.pid2label == {2: 0, 7: 1, 10: 2} and ds.num_classes == 3
    x, label, camid, modality = ds[1]
    assert (label, camid, modality) == (0, 4, IR)
    red = preprocess_image(apply_pseudo_ir(decode_image(records[1].path), "red"), 16, 8)
    assert np.array_equal(x.numpy(), red) and torch.equal(x[0], x[1])
    assert ds[0][3] == RGB


def test_dataset_bad_image_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = ReIDDataset([Record(str(bad), 1, 1, RGB)], build_eval_transform(16, 8))
    with pytest.raises(ImageDecodeError, match=r"broken\.jpg") as e:
        ds[0]
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="dataset is empty"):
        ReIDDataset([], build_eval_transform(16, 8))


def test_dataloader_with_pk_sampler(sysu_root: Path) -> None:
    records = read_sysu(sysu_root, "trainval")
    ds = ReIDDataset(records, build_train_transform(16, 8))
    loader = torch.utils.data.DataLoader(ds, batch_sampler=CrossModalPKSampler(records, p=3, k=2), num_workers=0)
    x, labels, camids, modality = next(iter(loader))
    assert x.shape == (12, 3, 16, 8) and x.dtype == torch.float32
    assert modality.tolist() == [0, 0, 1, 1] * 3
    assert set(camids.tolist()) <= {1, 2, 3, 4, 5, 6}
    assert labels.view(3, 4).unique(dim=1).shape[1] == 1  # one identity per group of 2K
