"""A tiny trained-looking checkpoint and dataset for export tests (no trainer needed)."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from runtime.spec import ModelSpec
from train.checkpoint import save_checkpoint
from train.models import create_model


def randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, as after training (a fresh BN would fold into an identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_((torch.rand(n, generator=g) - 0.5) * 0.4)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_((torch.rand(n, generator=g) - 0.5) * 0.2)


def make_checkpoint(path: Path, train_root: Path | None, height: int = 64, width: int = 32, stripes: int = 3,
                    embed_dim: int = 32, num_classes: int = 8, name: str = "dat_resnet18") -> Path:
    torch.manual_seed(0)
    kwargs = {"num_classes": num_classes, "stripes": stripes, "embed_dim": embed_dim, "pretrained": "none"}
    model = create_model(name, **kwargs).eval()
    randomise_bn(model)
    specs = {m: ModelSpec(name=name, modality=m, input_height=height, input_width=width,
                          embedding_dim=model.embedding_dim, stripes=stripes).to_dict() for m in ("rgb", "ir")}
    save_checkpoint(path, {
        "model": model.state_dict(),
        "config": {"data": {"name": "synthetic", "height": height, "width": width,
                            "root": str(train_root) if train_root else None}},
        "model_kwargs": {"name": name, "kwargs": kwargs},
        "num_classes": num_classes, "spec": specs, "epoch": 0, "step": 1,
        "train_root": str(train_root) if train_root else None,
    })
    return path


def graph_maps(model: onnx.ModelProto) -> tuple[dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]]]:
    """(tensor -> the node producing it, tensor -> the nodes reading it) of an ONNX graph."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return producer, consumers
