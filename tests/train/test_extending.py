"""Extending (issue 19 item 4): the backbone and loss term of docs/training.md's "Your own backbone or
loss term", in a file of the user's, train a few steps through the registries; the checkpoint is
evaluated by a fresh process that finds the plugin through the run's config."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from train.fit import main

ROOT = Path(__file__).resolve().parents[2]


def _documented_plugin() -> str:
    guide = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(# my_parts\.py\n.*?)```", guide, flags=re.S)
    assert len(blocks) == 1, "docs/training.md should show my_parts.py once"
    return blocks[0]


@pytest.fixture(autouse=True)
def _restore_registries():
    """What a test registers (or imports as a plugin) stays in that test."""
    from train import plugins
    from train.losses import LOSS_TERMS
    from train.models.registry import BACKBONES

    saved = dict(BACKBONES), dict(LOSS_TERMS), dict(plugins._loaded)
    yield
    for registry, before in zip((BACKBONES, LOSS_TERMS, plugins._loaded), saved):
        registry.clear()
        registry.update(before)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from train.data.synthetic import generate

    root = tmp_path_factory.mktemp("syn") / "synthetic"
    generate(root, ids=12, seed=0, height=64, width=32, min_per_cam=2, max_per_cam=2, test_ids=4, val_ids=2)
    return root


def test_a_user_file_backbone_and_loss_term_train_through_the_registries(tmp_path, tiny_data, capsys):
    plugin = tmp_path / "user" / "my_parts.py"
    plugin.parent.mkdir()
    plugin.write_text(_documented_plugin())
    runs = tmp_path / "runs"
    rc = main(["--plugin", str(plugin), "--set", "model.name=dat_tiny_cnn", "--set", "model.pretrained=none",
               "--set", "loss.extra_terms=centre:0.1", "--name", "tiny-cnn", "--out-dir", str(runs),
               "--root", str(tiny_data), "--epochs", "1", "--set", "max_steps_per_epoch=2", "--no-test", "--quiet",
               "--workers", "0", "--set", "data.height=64", "--set", "data.width=32", "--set", "data.p=4",
               "--set", "data.k=2", "--set", "model.embed_dim=16"])
    assert rc == 0, capsys.readouterr().err
    run = runs / "tiny-cnn"
    config = json.loads((run / "config.json").read_text())
    assert config["plugins"] == [str(plugin.resolve())] and config["model"]["name"] == "dat_tiny_cnn"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    epoch = next(r for r in rows if r["kind"] == "epoch")
    assert epoch["batches"] == 2 and epoch["loss/centre"] > 0.0
    # A fresh process (no --plugin): the checkpoint's config brings the plugin back.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "train.evaluate", "--checkpoint", str(run / "last.pt"),
                           "--root", str(tiny_data), "--trials", "1", "--out", str(tmp_path / "eval.json")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["model"]["name"] == "dat_tiny_cnn"


def test_registry_errors_name_the_fix(tmp_path, capsys):
    from train.models import Backbone, create_model, register_backbone
    from train.plugins import PluginError, load_plugins

    with pytest.raises(ValueError, match=r"unknown model 'dat_nonet'; valid: dat_effnet_lite0.*dat_resnet18.*--plugin FILE\.py"):
        create_model("dat_nonet")
    with pytest.raises(PluginError, match=r"plugin .*missing\.py not found"):
        load_plugins([str(tmp_path / "missing.py")])
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("resnet18")(lambda pretrained, last_stride: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="stages stem, layer1, layer2, layer3, layer4"):
        Backbone(stages={"stem": None}, channels=(1, 2, 3, 4))  # type: ignore[arg-type]
    assert main(["--set", "loss.extra_terms=nosuch:1", "--out-dir", str(tmp_path / "runs")]) == 2
    assert "unknown loss term(s) ['nosuch']" in capsys.readouterr().err and not (tmp_path / "runs").exists()
