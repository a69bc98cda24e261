"""The fixed polarity-blind shape descriptor (train.models.shape) and its join with the learned embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from train.models import create_model
from train.models.head import IMAGENET_STD, Normalize
from train.models.shape import ShapeDescriptor, shape_dim


def _descriptor(images: torch.Tensor, cell: int = 6) -> torch.Tensor:
    norm = Normalize(std=IMAGENET_STD)
    return ShapeDescriptor([255 * s for s in IMAGENET_STD], cell=cell)(norm(images))


def test_descriptor_is_blind_to_polarity_and_sees_layout() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 128, 64) * 255
    grey = x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    d = _descriptor(torch.cat([grey, 255 - grey]))
    assert d.shape == (4, shape_dim(128, 64, 6)) == (4, 20 * 9 * 36)
    assert torch.allclose(d.norm(dim=1), torch.ones(4), atol=1e-5)
    assert float(d[0] @ d[2]) > 0.9999 and float(d[1] @ d[3]) > 0.9999  # a negative: the same descriptor
    assert float(d[0] @ d[1]) < 0.5  # two different images are not alike
    shifted = torch.roll(grey[:1], 12, dims=3)  # the same content moved sideways: the layout changed
    assert float(_descriptor(shifted)[0] @ d[0]) < 0.9


def test_descriptor_matches_registered_twins_of_opposite_polarity(tmp_path: Path) -> None:
    from test_realdata import _twins

    from runtime.preprocess import preprocess_image

    _twins(tmp_path, n=12)
    load = [lambda p: preprocess_image(Image.open(p).convert("RGB"), 128, 64, "rgb")]
    ir = torch.from_numpy(np.stack([load[0](p) for p in sorted((tmp_path / "ir").iterdir())]))
    vis = torch.from_numpy(np.stack([load[0](p) for p in sorted((tmp_path / "vis").iterdir())]))
    sim = _descriptor(ir) @ _descriptor(vis).T
    assert (sim.argmax(1) == torch.arange(12)).float().mean() >= 0.9
    assert (sim.argmax(0) == torch.arange(12)).float().mean() >= 0.9


def test_shape_weight_joins_cosines_and_leaves_training_alone() -> None:
    torch.manual_seed(0)
    plain = create_model("dat_resnet18", num_classes=5, embed_dim=16, shape_weight=0.0)
    torch.manual_seed(0)
    shaped = create_model("dat_resnet18", num_classes=5, embed_dim=16, shape_weight=0.6, shape_cell=6)
    # No parameters and no state: the same checkpoint serves both, and training (parts, logits, taps,
    # the domain heads' inputs) is the same tensor for tensor.
    assert plain.state_dict().keys() == shaped.state_dict().keys()
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in shaped.parameters())
    shaped.load_state_dict(plain.state_dict())
    x = torch.rand(4, 3, 64, 32) * 255
    a, b = plain.train()(x, 1), shaped.train()(x, 1)
    for u, v in [(a.parts, b.parts), (a.logits, b.logits), (a.embedding, b.embedding), *zip(a.taps, b.taps)]:
        assert torch.equal(u, v)
    plain.eval(), shaped.eval()
    with torch.no_grad():
        learned, joined = plain.embed(x, 1), shaped.embed(x, 1)
        other_l, other_j = plain.embed(x.flip(0), 0), shaped.embed(x.flip(0), 0)
        d = _descriptor(x)
    assert joined.shape == (4, 48 + shape_dim(64, 32, 6)) and shaped.output_dim(64, 32) == joined.shape[1]
    assert torch.allclose(joined.norm(dim=1), torch.ones(4), atol=1e-5)
    want = 0.4 * (learned @ other_l.T) + 0.6 * (d @ d.flip(0).T)
    assert torch.allclose(joined @ other_j.T, want, atol=1e-5)
    enc = shaped.encoder("ir").eval()
    with torch.no_grad():
        assert torch.allclose(enc(x), joined, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [({"shape_weight": 1.0}, "shape_weight"), ({"shape_weight": -0.1}, "shape_weight"),
                                           ({"shape_cell": 1}, "shape_cell")])
def test_bad_shape_settings_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model("dat_resnet18", **kwargs)


def test_config_refuses_a_cell_too_big_for_the_input_and_the_preset_uses_the_shape() -> None:
    from train.config import ConfigError, apply_overrides, get_preset

    preset = get_preset("market-cpu")
    assert (preset.model.shape_weight, preset.model.shape_cell) == (0.65, 6)
    assert get_preset("demo").model.shape_weight == 0.0
    with pytest.raises(ConfigError, match="shape_cell"):
        apply_overrides(preset, {"model.shape_cell": "32"}).validate(require_root=False)
    with pytest.raises(ConfigError, match="shape_weight"):
        apply_overrides(preset, {"model.shape_weight": "1"}).validate(require_root=False)


def test_an_old_checkpoint_takes_a_shape_weight_at_evaluation(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
    from helpers_export import make_checkpoint

    from train.evaluate.features import TorchEmbedder, open_embedder

    ckpt = make_checkpoint(tmp_path / "best.pt", None, height=64, width=32, embed_dim=16)
    x = (np.random.default_rng(0).random((3, 3, 64, 32)) * 255).astype(np.float32)
    plain = TorchEmbedder.from_checkpoint(ckpt)
    shaped = TorchEmbedder.from_checkpoint(ckpt, shape_weight=0.6)
    assert shaped.specs[1].embedding_dim == 48 + shape_dim(64, 32, 6) and plain.specs[1].embedding_dim == 48
    e0, e1 = plain.embed(x, 1), shaped.embed(x, 1)
    np.testing.assert_allclose(e1[:, :48], e0 * np.sqrt(0.4), atol=1e-6)
    with pytest.raises(ValueError, match="re-export"):
        open_embedder(onnx=str(tmp_path), shape_weight=0.5)
