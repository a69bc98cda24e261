"""python -m train.sweep stripes: the paper's Fig. 5 as one command (issue 19 item 2)."""

from __future__ import annotations

from pathlib import Path

from train.sweep import main


def test_stripes_sweep_trains_tests_and_draws(tmp_path: Path, capsys) -> None:
    from train.data.synthetic import generate

    data = tmp_path / "synthetic"
    generate(data, ids=16, seed=0, height=64, width=32, min_per_cam=2, max_per_cam=2, test_ids=6, val_ids=2)
    argv = ["stripes", "--values", "1-2", "--preset", "demo", "--root", str(data), "--out-dir", str(tmp_path / "runs"),
            "--out", str(tmp_path / "stripes.png"), "--max-steps", "1", "--epochs", "1", "--quiet",
            "--set", "data.p=4", "--set", "data.k=2", "--set", "model.embed_dim=16", "--set", "data.workers=0"]
    assert main(argv) == 0
    assert (tmp_path / "stripes.png").stat().st_size > 1000
    for n in (1, 2):
        assert (tmp_path / "runs" / f"demo-full-stripes{n}" / "test.json").is_file()
    capsys.readouterr()
    assert main(argv) == 0  # both runs reused
    assert capsys.readouterr().err.count("done already") == 2
