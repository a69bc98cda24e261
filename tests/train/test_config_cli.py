"""train.fit's configuration as a user sees it: --print-config round trip, missing dataset roots,
run folders that never mix, and the field reference in docs/training.md (issue 19 items 2-4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.config import PRESETS, apply_overrides, config_from_dict, get_preset, load_yaml
from train.fit import dump_config, get_args_parser, main, resolve_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv", [[], ["--preset", "sysu-paper", "--root", "/data/SYSU"],
                                  ["--preset", "regdb-paper", "--variant", "baseline", "--set", "data.regdb_trial=4",
                                   "--set", "loss.extra_terms=centre:0.001", "--plugin", "my_terms.py"],
                                  ["--preset", "market-pseudo-ir", "--set", "data.market_ir_cams=5,6",
                                   "--set", "max_steps=7", "--set", "optim.milestones=30"]])
def test_print_config_is_yaml_that_config_reads_back(argv, tmp_path, capsys):
    assert main([*argv, "--print-config"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# python -m train.fit --config THIS.yaml")
    (tmp_path / "c.yaml").write_text(text)
    want = resolve_config(get_args_parser().parse_args([*argv, "--print-config"]))
    # --config over a different preset (the default demo) still gives the identical config
    again = resolve_config(get_args_parser().parse_args(["--config", str(tmp_path / "c.yaml"), "--print-config"]))
    assert again == want
    assert config_from_dict(load_yaml(tmp_path / "c.yaml")) == want


@pytest.mark.parametrize("preset", list(PRESETS))
def test_a_config_read_back_prints_the_same_text(preset, tmp_path, capsys, monkeypatch):
    """--print-config of a config read back, from the YAML it printed or from a checkpoint's copy, is the
    same text, so two runs' configs can be diffed (issue 30: adv_ramp_epochs 8 came back as 8.0)."""
    from train.checkpoint import load_checkpoint, save_checkpoint

    monkeypatch.delenv("IRREID_RUNS", raising=False)
    assert main(["--preset", preset, "--print-config"]) == 0
    text = capsys.readouterr().out
    (tmp_path / "c.yaml").write_text(text)
    for base in ("demo", preset):  # --config over another preset and over its own
        assert main(["--preset", base, "--config", str(tmp_path / "c.yaml"), "--print-config"]) == 0
        assert capsys.readouterr().out == text
    cfg = resolve_config(get_args_parser().parse_args(["--preset", preset, "--print-config"]))
    save_checkpoint(tmp_path / "ck.pt", {"config": cfg.to_dict()})  # what a run's checkpoint holds
    assert dump_config(config_from_dict(load_checkpoint(tmp_path / "ck.pt")["config"])) == text
    assert dump_config(config_from_dict(load_yaml(tmp_path / "c.yaml"))) == text


def test_whole_floats_print_alike_whichever_way_they_came_in():
    cfg = get_preset("demo")
    assert cfg.loss.adv_ramp_epochs == 8 and "adv_ramp_epochs: 8.0\n" in dump_config(cfg)
    for value in ("8", "8.0", 8, 8.0):
        assert "adv_ramp_epochs: 8.0\n" in dump_config(apply_overrides(cfg, {"loss.adv_ramp_epochs": value}))
    extra = apply_overrides(cfg, {"loss.extra_terms": {"centre": 1}})
    assert "extra_terms: {centre: 1.0}" in dump_config(extra)


@pytest.mark.parametrize("preset", [p for p in PRESETS if PRESETS[p]().data.name != "synthetic"])
def test_a_real_data_preset_without_root_is_one_clear_line(preset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ../shared/... to fall back on, and no run folder may appear here
    assert main(["--preset", preset, "--out-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.root is required" in err and "pass --root DIR" in err
    assert "layout" in err and not (tmp_path / "runs").exists()
    assert PRESETS[preset]().data.root is None  # never a development folder


def test_a_failed_start_leaves_no_run_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    rc = main(["--preset", "sysu-paper", "--root", str(tmp_path / "missing"), "--out-dir", str(runs), "--no-test",
               "--set", "model.pretrained=none", "--set", "model.name=dat_resnet18"])
    assert rc == 2 and "missing" in capsys.readouterr().err
    assert not runs.exists()
    assert main(["--out-dir", str(runs), "--set", "model.name=dat_nonet"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'dat_nonet'" in err and "--plugin" in err and not runs.exists()


def test_a_new_run_never_mixes_with_an_old_one(tmp_path, capsys):
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes(b"x")
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "epoch", "epoch": 0}) + "\n")
    (tmp_path / "runs" / "demo-2").mkdir()
    assert main(["--out-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"{run} already holds a run (last.pt, metrics.jsonl)" in err
    assert f"--resume {run / 'last.pt'}" in err and "--name demo-3" in err
    assert (run / "metrics.jsonl").read_text().count("\n") == 1  # untouched
