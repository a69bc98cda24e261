"""RegDB trials (issue 19 item 1): train.evaluate --trial N scores that trial only, a RegDB run writes
test.json for its own trial, and python -m train.regdb_trials runs the protocol in one command."""

from __future__ import annotations

import json

import pytest

from train.evaluate.protocols import trial_numbers
from train.regdb_trials import main, parse_trials

TINY = ["--epochs", "1", "--max-steps", "1", "--workers", "0", "--quiet",
        "--set", "model.name=dat_resnet18", "--set", "model.pretrained=none", "--set", "model.embed_dim=16",
        "--set", "data.height=64", "--set", "data.width=32", "--set", "data.p=2", "--set", "data.k=2"]


def test_trial_numbers_and_the_trials_option():
    assert trial_numbers("regdb", 10) == list(range(1, 11)) and trial_numbers("regdb", 3, only=7) == [7]
    assert trial_numbers("sysu", 2) == [0, 1] and trial_numbers("sysu", 10, only=4) == [4]
    with pytest.raises(ValueError, match="--trial 11 is invalid for regdb"):
        trial_numbers("regdb", only=11)
    assert parse_trials("1-3,7") == [1, 2, 3, 7] and parse_trials("4") == [4]
    for bad in ("0-2", "x", "9-11"):
        with pytest.raises(ValueError, match="--trials"):
            parse_trials(bad)


def test_ten_trial_protocol_in_one_command(regdb_root, tmp_path, capsys):
    root = regdb_root  # trials 1 and 2
    runs = tmp_path / "runs"
    argv = ["--root", str(root), "--trials", "1-2", "--out-dir", str(runs), "--name", "r", *TINY]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "RegDB, 2 trial(s) 1,2: mean ± std" in out and "v2t" in out and "t2v" in out
    for t in (1, 2):
        test = json.loads((runs / f"r-trial{t}" / "test.json").read_text())
        assert test["trials"] == [t] and {r["trial"] for r in test["rows"]} == {t}  # its own trial only
        assert json.loads((runs / f"r-trial{t}" / "config.json").read_text())["data"]["regdb_trial"] == t
    res = json.loads((runs / "r-trials.json").read_text())
    assert res["trials"] == [1, 2] and {(s["direction"], s["trials"]) for s in res["summary"]} == {("v2t", 2), ("t2v", 2)}
    # Again: both trials are reused, nothing is trained, the same table comes out.
    before = (runs / "r-trial1" / "last.pt").stat().st_mtime_ns
    assert main(argv) == 0
    again = capsys.readouterr()
    assert again.err.count("done already") == 2 and (runs / "r-trial1" / "last.pt").stat().st_mtime_ns == before
    assert json.loads((runs / "r-trials.json").read_text())["summary"] == res["summary"]


def test_evaluate_scores_a_regdb_checkpoint_on_its_own_trial(regdb_root, tmp_path, capsys):
    from train.evaluate.cli import main as evaluate

    root = regdb_root
    runs = tmp_path / "runs"
    assert main(["--root", str(root), "--trials", "2", "--out-dir", str(runs), "--name", "r", *TINY]) == 0
    ckpt = runs / "r-trial2" / "last.pt"
    capsys.readouterr()
    assert evaluate(["--checkpoint", str(ckpt), "--data", "regdb", "--root", str(root), "--out",
                     str(tmp_path / "own.json")]) == 0
    assert "RegDB trial 2: the trial this checkpoint was trained on" in capsys.readouterr().out
    assert json.loads((tmp_path / "own.json").read_text())["trials"] == [2]
    assert evaluate(["--checkpoint", str(ckpt), "--data", "regdb", "--root", str(root), "--trials", "2"]) == 2
    assert "trained on RegDB trial 2" in capsys.readouterr().err
    assert evaluate(["--checkpoint", str(ckpt), "--data", "regdb", "--root", str(root), "--trial", "1",
                     "--out", str(tmp_path / "t1.json")]) == 0
    assert json.loads((tmp_path / "t1.json").read_text())["trials"] == [1]
