"""python -m train.fit: exact resume, NaN handling, config errors, a 2-process DDP run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.checkpoint import load_checkpoint
from train.config import ConfigError, apply_overrides, get_preset
from train.fit import main

ROOT = Path(__file__).resolve().parents[2]

# A tiny but real run: resnet18 at 64x32, 4 ids x 2 images per modality, 2 steps an epoch.
TINY = ["--preset", "demo", "--no-test", "--quiet", "--workers", "0",
        "--set", "data.height=64", "--set", "data.width=32", "--set", "data.p=4", "--set", "data.k=2",
        "--set", "max_steps_per_epoch=2", "--set", "eval_every=1", "--set", "model.embed_dim=32",
        "--set", "optim.warmup_epochs=0"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from train.data.synthetic import generate

    root = tmp_path_factory.mktemp("syn") / "synthetic"
    generate(root, ids=16, seed=0, min_per_cam=2, max_per_cam=3)
    return root


def _run(tmp_path: Path, data: Path, name: str, *extra: str) -> int:
    return main([*TINY, "--set", f"data.root={data}", "--out-dir", str(tmp_path), "--name", name, *extra])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_resume_is_exact(tmp_path, tiny_data):
    assert _run(tmp_path, tiny_data, "straight", "--epochs", "2") == 0
    assert _run(tmp_path, tiny_data, "split", "--epochs", "1") == 0
    assert _run(tmp_path, tiny_data, "split", "--epochs", "2", "--resume", str(tmp_path / "split" / "last.pt")) == 0
    a, b = _weights(tmp_path / "straight" / "last.pt"), _weights(tmp_path / "split" / "last.pt")
    assert a.keys() == b.keys()
    diffs = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point()}
    assert max(diffs.values()) == 0.0, sorted(diffs.items(), key=lambda kv: -kv[1])[:3]
    ckpt = load_checkpoint(tmp_path / "straight" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 4
    # The run left its logs and pictures.
    rows = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [0, 1]
    assert any(r["kind"] == "val" and 0.0 <= r["rank1"] <= 1.0 for r in rows)
    assert (tmp_path / "straight" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "straight" / "best.pt").exists()


def test_checkpoint_is_safe_to_load_and_complete(tmp_path, tiny_data):
    assert _run(tmp_path, tiny_data, "c", "--epochs", "1", "--variant", "baseline") == 0
    ckpt = torch.load(tmp_path / "c" / "last.pt", weights_only=True)  # no pickled objects inside
    assert ckpt["config"]["loss"]["variant"] == "baseline"
    assert ckpt["num_classes"] == 10 and set(ckpt["spec"]) == {"rgb", "ir"}
    assert ckpt["spec"]["ir"]["input_height"] == 64 and ckpt["spec"]["ir"]["embedding_dim"] == 3 * 32
    assert not any(k.startswith("domain_heads.") for k in ckpt["model"])  # baseline has no D


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_data, capsys):
    assert _run(tmp_path, tiny_data, "nan", "--epochs", "1") == 0
    good = (tmp_path / "nan" / "last.pt").read_bytes()
    # (a resumed run keeps its optimiser's learning rates: an infinite loss weight makes the loss non-finite)
    rc = _run(tmp_path, tiny_data, "nan", "--epochs", "2", "--set", "loss.adv_weight=inf",
              "--resume", str(tmp_path / "nan" / "last.pt"))
    assert rc == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "last good checkpoint" in err
    assert (tmp_path / "nan" / "last.pt").read_bytes() == good


def test_invalid_config_is_refused_with_valid_values(capsys):
    assert main(["--variant", "adversarial"]) == 2
    assert "valid values: baseline, vanilla, shallow, full" in capsys.readouterr().err
    assert main(["--preset", "nope"]) == 2
    assert "valid presets: demo" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="valid fields here"):
        apply_overrides(get_preset("demo"), {"optim.learning_rate": "1"})
    with pytest.raises(ConfigError, match=r"data\.root is required"):
        apply_overrides(get_preset("sysu-paper"), {}).validate()


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not found")
def test_two_process_ddp_on_cpu(tmp_path, tiny_data):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "train.fit", *TINY,
           "--set", f"data.root={tiny_data}", "--out-dir", str(tmp_path), "--name", "ddp", "--epochs", "1",
           "--set", "log_batches=true", "--set", "data.p=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "ddp"
    seen = [[json.loads(x)["indices"] for x in (run / f"batches.rank{k}.jsonl").read_text().splitlines()]
            for k in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 2
    for b0, b1 in zip(*seen):
        assert not set(b0) & set(b1)  # ranks saw disjoint batches
    # rank 0's checkpoint loads and resumes in a 1-process run
    assert main([*TINY, "--set", f"data.root={tiny_data}", "--resume", str(run / "last.pt"), "--epochs", "2",
                 "--set", "data.p=2"]) == 0
    assert load_checkpoint(run / "last.pt")["epoch"] == 1


def test_adversarial_ramp_and_styled_cache_folders():
    from train.config import DataConfig
    from train.prepare import synthetic_root
    from train.trainer import adv_ramp_weight

    assert adv_ramp_weight(0.3, 0.0, 0.0) == 0.3  # no ramp: the paper
    ramp = [adv_ramp_weight(0.3, 8.0, e) for e in (0.0, 1.0, 4.0, 8.0, 20.0)]
    assert ramp[0] == 0.0 and ramp == sorted(ramp) and ramp[-1] == ramp[-2] == pytest.approx(0.3, abs=1e-4)
    with pytest.raises(ConfigError, match="adv_ramp_epochs"):
        apply_overrides(get_preset("demo"), {"loss.adv_ramp_epochs": "-1"}).validate()
    plain = synthetic_root(DataConfig(synthetic_ids=300))
    styled = synthetic_root(DataConfig(synthetic_ids=300, synthetic_ir_dye=1.0, synthetic_mark_scale=1.5))
    assert plain.name == "synthetic-ids300-seed0" and styled.name == "synthetic-ids300-seed0-m1.5-d1"
