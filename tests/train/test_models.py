"""train.models: shapes over the configuration space, routing, sharing, stripe bins, weights loading."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torchvision
from torch import nn

from train.models import (
    NetworkConfig,
    PretrainedWeightsError,
    ReIDOutput,
    StripePool,
    create_model,
    create_model_from_config,
    embedding_from_parts,
    imagenet_weights_path,
    list_models,
    stripe_bins,
)

H, W = 64, 32  # tiny images: a 4x2 final map with last stride 1 (resnet output stride 16)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, H, W, generator=g) * 255.0


def _check_output(out: ReIDOutput, model: nn.Module, n: int, num_classes: int) -> None:
    cfg = model.config
    assert isinstance(out, ReIDOutput)
    assert out.parts.shape == (n, cfg.stripes, cfg.embed_dim)
    assert out.embedding.shape == (n, cfg.stripes * cfg.embed_dim)
    if num_classes:
        assert out.logits is not None and out.logits.shape == (n, cfg.stripes, num_classes)
    else:
        assert out.logits is None
    chans = {
        "resnet18": (64, 128, 256, 512),
        "resnet34": (64, 128, 256, 512),
        "resnet50": (256, 512, 1024, 2048),
    }
    assert tuple(t.shape for t in out.taps) == tuple((n, c) for c in chans[cfg.backbone])
    for t in (out.parts, out.embedding, *out.taps, *([out.logits] if num_classes else [])):
        assert torch.isfinite(t).all()
    # per-stripe L2 then whole-vector L2: unit norm, each stripe block has norm 1/sqrt(n)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(n))
    blocks = out.embedding.view(n, cfg.stripes, cfg.embed_dim).norm(dim=2)
    torch.testing.assert_close(blocks, torch.full((n, cfg.stripes), cfg.stripes**-0.5))


def test_registry() -> None:
    assert list_models() == ["dat_effnet_lite0", "dat_effnet_lite1", "dat_effnet_lite2",
                             "dat_resnet18", "dat_resnet34", "dat_resnet50"]
    with pytest.raises(ValueError, match="valid: dat_effnet_lite0, dat_effnet_lite1, dat_effnet_lite2, dat_resnet18, "
                                         "dat_resnet34, dat_resnet50"):
        create_model("dat_vgg")
    with pytest.raises(ValueError, match="unknown model option"):
        create_model("dat_resnet18", stripe=3)


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("stripes", 0, "1..9"),
        ("stripes", 10, "1..9"),
        ("share_from", 5, "0..4"),
        ("last_stride", 3, "1, 2"),
        ("num_classes", -1, ">= 0"),
        ("domain_levels", (5,), "valid: 1, 2, 3, 4"),
    ],
)
def test_invalid_options_are_refused(field: str, value: object, hint: str) -> None:
    with pytest.raises(ValueError, match=hint):
        create_model("dat_resnet18", **{field: value})


@pytest.mark.parametrize("stripes", range(1, 10))
def test_shapes_over_stripes_both_modalities(stripes: int) -> None:
    model = create_model("dat_resnet18", num_classes=7, stripes=stripes, embed_dim=32)
    for modality in (0, 1):
        _check_output(model(_images(3), modality), model, 3, 7)


@pytest.mark.parametrize("share_from", range(0, 5))
def test_shapes_over_share_from_mixed_batch(share_from: int) -> None:
    model = create_model(
        "dat_resnet18", num_classes=5, share_from=share_from, embed_dim=32, domain_levels=(1, 2, 3, 4, "f")
    )
    out = model(_images(4), torch.tensor([1, 0, 0, 1]))
    _check_output(out, model, 4, 5)
    logits = model.domain_logits(out)
    assert [tuple(t.shape) for t in logits] == [(4,)] * 5


@pytest.mark.parametrize(
    ("name", "stripes", "share_from", "modality"),
    [
        ("dat_resnet34", 3, 4, 1),
        ("dat_resnet34", 6, 2, 0),
        ("dat_resnet50", 3, 4, 0),
        ("dat_resnet50", 9, 1, 1),
    ],
)
def test_shapes_larger_backbones(name: str, stripes: int, share_from: int, modality: int) -> None:
    model = create_model(name, num_classes=0, stripes=stripes, share_from=share_from)
    out = model(_images(2), modality)
    _check_output(out, model, 2, 0)


def test_paper_geometry_resnet50() -> None:
    """Last stride 1: 288x144 gives an 18x9 map of 2048 channels; the embedding is 1536-d."""
    model = create_model("dat_resnet50").eval()
    with torch.no_grad():
        fmap, taps = model.forward_features(torch.zeros(1, 3, 288, 144), "ir")
        emb = embedding_from_parts(model.head(fmap))
    assert fmap.shape == (1, 2048, 18, 9)
    assert [t.shape[1] for t in taps] == [256, 512, 1024, 2048]
    assert emb.shape == (1, 1536)


def test_paper_parameter_counts_resnet50() -> None:
    """DESIGN.md's figures: 35.2 M parameters for both branches, 26.7 M for one encoder (no classifiers)."""
    model = create_model("dat_resnet50", num_classes=0, domain_levels=())
    both = sum(p.numel() for p in model.parameters())
    encoder = sum(p.numel() for p in model.encoder(1).parameters())
    assert 35.1e6 < both < 35.3e6 and 26.6e6 < encoder < 26.7e6
    assert both == encoder + sum(p.numel() for p in model.branches[0].parameters())


def test_mixed_batch_equals_per_modality_runs_in_eval() -> None:
    """Routing keeps batch order: a mixed batch equals each modality run alone (eval BN)."""
    model = create_model("dat_resnet18", num_classes=4, embed_dim=16).eval()
    with torch.no_grad():  # make the two branches differ, so a routing mix-up shows
        for p in model.branches[1].parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, m = _images(6, seed=1), torch.tensor([1, 0, 1, 1, 0, 0])
    with torch.no_grad():
        mixed = model(x, m)
        rgb, ir = model(x[m == 0], 0), model(x[m == 1], 1)
    for got, a, b in [
        (mixed.embedding, rgb.embedding, ir.embedding),
        (mixed.logits, rgb.logits, ir.logits),
        *zip(mixed.taps, rgb.taps, ir.taps),
    ]:
        torch.testing.assert_close(got[m == 0], a, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got[m == 1], b, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(rgb.embedding, model(x[m == 0], 1).embedding)


def test_mixed_batch_gradients_reach_both_branches() -> None:
    model = create_model("dat_resnet18", num_classes=3, embed_dim=16)
    out = model(_images(4), torch.tensor([0, 1, 0, 1]))
    out.logits.sum().backward()
    for branch in model.branches:
        assert branch["stem"].conv1.weight.grad.abs().sum() > 0


def test_modality_forms_and_errors() -> None:
    model = create_model("dat_resnet18", embed_dim=16).eval()
    x = _images(2)
    with torch.no_grad():
        ref = model.embed(x, 1)
        for form in ("ir", torch.tensor(1), torch.tensor([1, 1]), [1, 1]):
            torch.testing.assert_close(model.embed(x, form), ref)
    for bad, msg in [
        (2, "valid: 0"),
        ("thermal", "valid: 'rgb'"),
        (torch.tensor([0, 1, 0]), r"shape \(2,\)"),
        (torch.tensor([0.0, 1.0]), "integer"),
    ]:
        with pytest.raises(ValueError, match=msg):
            model.embed(x, bad)


@pytest.mark.parametrize("share_from", [1, 2, 4])
def test_branches_are_separate_and_tail_shared(share_from: int) -> None:
    model = create_model("dat_resnet18", share_from=share_from, embed_dim=16)
    rgb = {id(p) for p in model.branches[0].parameters()}
    ir = {id(p) for p in model.branches[1].parameters()}
    assert rgb and ir and not rgb & ir
    stages = ["stem", "layer1", "layer2", "layer3", "layer4"]
    for i, name in enumerate(stages):
        a, b = model.stage(0, name), model.stage(1, name)
        if i < share_from:  # stem + blocks before share_from: modality-specific, equal at init
            assert a is not b and a.state_dict().keys() == b.state_dict().keys()
            for (ka, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
                assert pa is not pb, ka
                torch.testing.assert_close(pa, pb)
        else:
            assert a is b
    w4 = model.stage(0, "layer4")[0].conv1.weight
    assert w4 is model.stage(1, "layer4")[0].conv1.weight  # block 4: one Parameter object
    with torch.no_grad():
        model.stage(0, "stem").conv1.weight.add_(1.0)  # changing one branch leaves the other alone
    assert not torch.equal(model.stage(0, "stem").conv1.weight, model.stage(1, "stem").conv1.weight)


def test_param_groups_partition_the_parameters() -> None:
    model = create_model("dat_resnet18", num_classes=5, embed_dim=16)
    groups = model.param_groups()
    assert set(groups) == {"pretrained", "new", "domain"}
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in model.domain_heads.parameters()} == {id(p) for p in groups["domain"]}
    assert {id(p) for p in model.head.parameters()} <= {id(p) for p in groups["new"]}


@pytest.mark.parametrize("stripes", range(1, 10))
def test_stripe_bins_equal_adaptive_pool(stripes: int) -> None:
    pool, ref = StripePool(stripes), nn.AdaptiveAvgPool2d((stripes, 1))
    for height in range(1, 25):
        x = torch.randn(2, 5, height, 3)
        expected = ref(x).squeeze(3).transpose(1, 2)  # (N, C, n, 1) -> (N, n, C)
        torch.testing.assert_close(pool(x), expected, rtol=1e-5, atol=1e-6)
    assert stripe_bins(18, 3) == [(0, 6), (6, 12), (12, 18)]
    assert stripe_bins(4, 3) == [(0, 2), (1, 3), (2, 4)]  # overlapping bins, as adaptive pooling


def test_encoder_matches_embed_and_has_no_training_branches() -> None:
    model = create_model("dat_resnet18", num_classes=9, embed_dim=16, domain_levels=(1, 4, "f")).eval()
    x = _images(3)
    for m in (0, 1):
        enc = model.encoder(m)
        assert set(dict(enc.named_children())) == {"normalize", "backbone", "head"}
        assert list(dict(enc.backbone.named_children())) == ["stem", "layer1", "layer2", "layer3", "layer4"]
        with torch.no_grad():
            torch.testing.assert_close(enc(x), model.embed(x, m))
        enc_ids = {id(p) for p in enc.parameters()}
        assert not enc_ids & {
            id(p) for p in [*model.classifiers.parameters(), *model.domain_heads.parameters()]
        }
        assert not enc_ids & {id(p) for p in model.branches[1 - m].parameters()}
        assert len(enc.head.fcs) == len(enc.head.bns) == 3 and enc.head.fcs[0].bias is None


def test_stripe_head_exports_to_onnx_without_adaptive_pool() -> None:
    """Height 5 with 3 stripes (overlapping bins): plain Slice/ReduceMean ops, ONNX Runtime agrees."""
    import onnxruntime as ort

    head = create_model("dat_resnet18", embed_dim=8).head.eval()
    fmap = torch.randn(2, 512, 5, 3)
    program = torch.onnx.export(
        head,
        (fmap,),
        dynamo=True,
        input_names=["fmap"],
        output_names=["parts"],
        dynamic_shapes=({0: "batch"},),
        verbose=False,
    )
    ops = {node.op_type for node in program.model_proto.graph.node}
    assert not ops & {"AdaptiveAvgPool2d", "GlobalAveragePool", "AveragePool"}, ops
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    other = torch.randn(4, 512, 5, 3)
    got = session.run(None, {"fmap": other.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), head(other), rtol=1e-4, atol=1e-5)


def test_input_is_normalised_inside_with_custom_mean_std() -> None:
    model = create_model("dat_resnet18", embed_dim=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).eval()
    torch.testing.assert_close(model.normalize.mean.flatten(), torch.full((3,), 127.5))
    torch.testing.assert_close(model.normalize(torch.full((1, 3, 2, 2), 127.5)), torch.zeros(1, 3, 2, 2))


def _torchvision_resnet18_file(tmp_path, seed: int = 3):
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_pretrained_local_torchvision_file_loads_into_both_branches(tmp_path) -> None:
    net, path = _torchvision_resnet18_file(tmp_path)
    model = create_model("dat_resnet18", pretrained=str(path), embed_dim=16)
    for m in (0, 1):
        torch.testing.assert_close(model.stage(m, "stem").conv1.weight, net.conv1.weight)
        torch.testing.assert_close(model.stage(m, "layer3")[1].bn2.running_var, net.layer3[1].bn2.running_var)
        torch.testing.assert_close(model.stage(m, "layer4")[0].conv1.weight, net.layer4[0].conv1.weight)
    assert model.stage(0, "layer4")[0].conv1.stride == (1, 1)  # last stride applied after loading


def test_pretrained_from_our_checkpoint_and_config_round_trip(tmp_path) -> None:
    src = create_model("dat_resnet18", num_classes=6, embed_dim=16).eval()
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": src.state_dict(), "model_config": src.config.to_dict()}, path)
    ckpt = torch.load(path, weights_only=True)
    again = create_model_from_config(ckpt["model_config"], pretrained=str(path)).eval()
    x = _images(2)
    with torch.no_grad():
        torch.testing.assert_close(again.embed(x, 1), src.embed(x, 1))
    assert isinstance(again.config, NetworkConfig) and again.config.num_classes == 6
    via_json = create_model_from_config(json.loads(json.dumps(src.config.to_dict())))
    assert via_json.config == src.config
    with pytest.warns(
        UserWarning, match="left at their initialisation"
    ):  # other num_classes: classifiers skipped
        create_model("dat_resnet18", num_classes=11, embed_dim=16, pretrained=str(path))


def test_pretrained_errors_are_one_line_and_name_the_file(tmp_path, monkeypatch) -> None:
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a torch file")
    cases = [(str(bad), "junk.pth"), (str(tmp_path / "missing.pth"), "does not exist")]
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pth")
    cases.append((str(tmp_path / "other.pth"), "neither a torchvision ResNet"))
    _, r18 = _torchvision_resnet18_file(tmp_path)
    for pretrained, msg in cases:
        with pytest.raises(PretrainedWeightsError, match=msg) as info:
            create_model("dat_resnet18", pretrained=pretrained)
        assert "\n" not in str(info.value)
    with pytest.raises(PretrainedWeightsError, match="do not fit"):
        create_model("dat_resnet50", pretrained=str(r18))


def test_imagenet_offline_error_then_cache_hit(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("IRREID_OFFLINE", "1")
    target = imagenet_weights_path("resnet18")
    assert target == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(PretrainedWeightsError) as info:
        create_model("dat_resnet18", pretrained="imagenet")
    message = str(info.value)
    assert str(target) in message and "download.pytorch.org" in message and "'none'" in message
    net, path = _torchvision_resnet18_file(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(path.read_bytes())  # a file placed where the error said
    model = create_model("dat_resnet18", pretrained="imagenet")
    torch.testing.assert_close(model.stage(1, "stem").conv1.weight, net.conv1.weight)


def test_train_and_eval_return_the_same_structure() -> None:
    model = create_model("dat_resnet18", num_classes=3, embed_dim=16)
    x = _images(2)
    train_out = model(x, 0)
    eval_out = copy.deepcopy(model).eval()(x, 0)
    assert type(train_out) is type(eval_out)
    assert [None if t is None else tuple(t.shape) for t in train_out[:2]] == [
        None if t is None else tuple(t.shape) for t in eval_out[:2]
    ]
