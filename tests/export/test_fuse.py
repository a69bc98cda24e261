from __future__ import annotations

import pytest
import torch
from helpers_export import randomise_bn

from export.fuse import FusedStripeHead, deploy_encoder, pooling_matrix
from train.models import StripeHead, create_model


@pytest.mark.parametrize(("height", "stripes"), [(7, 3), (5, 3), (2, 3), (9, 6), (8, 4)])
def test_pooling_matrix_equals_adaptive_pool(height: int, stripes: int) -> None:
    fmap = torch.randn(2, 5, height, 3)
    want = torch.nn.AdaptiveAvgPool2d((stripes, 1))(fmap).squeeze(3)  # (N, C, n)
    got = fmap.flatten(2) @ pooling_matrix(height, 3, stripes).t()
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("height", [7, 8])  # 7 is not divisible by 3 stripes
def test_fused_head_equals_stripe_head(height: int) -> None:
    torch.manual_seed(0)
    head = StripeHead(16, 3, 8)
    randomise_bn(head)
    head.eval()
    fused = FusedStripeHead(head, height, 4)
    fmap = torch.randn(4, 16, height, 4)
    torch.testing.assert_close(fused(fmap), head(fmap), atol=1e-5, rtol=1e-5)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in fused.modules()) == 1  # one op for all stripes
    assert fused.fc.groups == 3


def test_deploy_encoder_equals_model_and_leaves_it_untouched() -> None:
    torch.manual_seed(0)
    model = create_model("dat_resnet18", num_classes=5, embed_dim=16).eval()
    randomise_bn(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(3, 3, 72, 32) * 255  # feature map height 9 -> bins of 3
    for m in ("rgb", "ir"):
        enc = deploy_encoder(model, m, 72, 32)
        assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in enc.modules())
        with torch.no_grad():
            torch.testing.assert_close(enc(x), model.embed(x, m), atol=1e-5, rtol=1e-4)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_export_flushes_subnormal_weights_to_zero() -> None:
    """A subnormal float32 weight (BN folded into a silenced channel) makes a CPU's float conv crawl."""
    import numpy as np
    from onnx import numpy_helper

    from export.graph import export_onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] = 1e-40  # subnormal in float32
        net[0].weight[1, 0, 0, 0] = 2e-38  # the least normal floats stay
    g = export_onnx(net, 8, 8, 4, 17)
    (w,) = [numpy_helper.to_array(i) for i in g.graph.initializer if i.dims == [4, 3, 3, 3]]
    want = net[0].weight.detach().numpy().copy()
    want[0, 0, 0, 0] = 0.0
    np.testing.assert_array_equal(w, want)
