"""Issue 30: the hand-made shape descriptor is gone from the embedding, the export and the config. An old
checkpoint that named it still loads (its options dropped, one line on stderr); a config naming it is
refused in one line that says it was removed; the evaluation and export CLIs have no --shape-weight."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from train.checkpoint import load_checkpoint, save_checkpoint
from train.config import ConfigError, apply_overrides, config_from_dict, get_preset
from train.fit import main as fit_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from helpers_export import make_checkpoint


def _old_checkpoint(path: Path, weight: float = 0.65) -> Path:
    """A checkpoint as session 7's market-cpu wrote it: shape_weight/shape_cell in its model kwargs and
    config, and its spec's embedding width including the descriptor's 720 values."""
    make_checkpoint(path, None, height=64, width=32, embed_dim=16)
    ckpt = load_checkpoint(path)
    ckpt["model_kwargs"]["kwargs"] |= {"shape_weight": weight, "shape_cell": 6}
    ckpt["config"]["model"] = {"name": "dat_resnet18", "embed_dim": 16, "shape_weight": weight, "shape_cell": 6}
    for spec in ckpt["spec"].values():
        spec["embedding_dim"] = 48 + 720
    save_checkpoint(path, {k: v for k, v in ckpt.items() if k not in ("format", "format_version")})
    return path


def test_an_old_checkpoint_with_the_descriptor_loads_with_one_warning_line(tmp_path: Path, capsys) -> None:
    from export.source import load_source
    from train.evaluate.features import TorchEmbedder

    path = _old_checkpoint(tmp_path / "best.pt")
    ckpt = load_checkpoint(path)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "removed" in err and "shape" in err
    assert "shape_weight" not in ckpt["model_kwargs"]["kwargs"] and "shape_cell" not in ckpt["config"]["model"]
    assert config_from_dict(ckpt["config"]).model.embed_dim == 16  # what --resume reads

    emb = TorchEmbedder.from_checkpoint(path)
    assert {s.embedding_dim for s in emb.specs.values()} == {48}
    x = (np.random.default_rng(0).random((2, 3, 64, 32)) * 255).astype(np.float32)
    assert emb.embed(x, 1).shape == (2, 48)
    src = load_source(path)
    assert {s.embedding_dim for s in src.specs.values()} == {48} and "shape_weight" not in src.info
    assert not any(name.startswith("shape") for name, _ in src.model.named_modules())
    assert len(capsys.readouterr().err.strip().splitlines()) == 2  # one line per load, nothing else


def test_an_old_checkpoint_that_did_not_use_it_loads_silently(tmp_path: Path, capsys) -> None:
    load_checkpoint(_old_checkpoint(tmp_path / "best.pt", weight=0.0))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("field", ["shape_weight", "shape_cell"])
def test_a_config_naming_the_descriptor_is_one_clear_line(field: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match=f"model.{field}.*removed in issue 30"):
        apply_overrides(get_preset("market-cpu"), {f"model.{field}": "0.65"})
    (tmp_path / "c.yaml").write_text(f"model:\n  {field}: 6\n")
    for argv in (["--config", str(tmp_path / "c.yaml")], ["--set", f"model.{field}=6"]):
        assert fit_main([*argv, "--print-config"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"model.{field}" in err and "removed in issue 30" in err


def test_no_descriptor_anywhere_in_the_embedding_or_the_flags() -> None:
    from export.onnx import get_args_parser as export_args
    from train.evaluate.cli import get_args_parser as evaluate_args

    for parser in (export_args(), evaluate_args()):
        assert not any("--shape-weight" in a.option_strings for a in parser._actions)
    assert not hasattr(get_preset("market-cpu").model, "shape_weight")
    with pytest.raises(ModuleNotFoundError):
        __import__("train.models.shape")
