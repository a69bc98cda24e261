"""A folder with its own train.py (issue 19 item 5): what `python -m train.fit` does there, and the
ways that work (the irreid-train console script, python -P), in real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What pip writes for [project.scripts] irreid-train = "train.console:main"
CONSOLE_SCRIPT = "import sys\nfrom train.console import main\nsys.exit(main())\n"


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "agw-baseline"
    folder.mkdir()
    (folder / "train.py").write_text("open('ran.txt', 'w').write('the user train.py ran')\n")
    return folder


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONSAFEPATH", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_python_m_in_a_folder_with_train_py_runs_that_file(user_folder: Path) -> None:
    """The failure the guide's troubleshooting entry explains (its message quoted there verbatim)."""
    proc = _run(["-m", "train.fit", "--print-config"], user_folder)
    assert proc.returncode != 0
    assert "__path__ attribute not found on 'train' while trying to find 'train.fit'" in proc.stderr
    assert (user_folder / "ran.txt").is_file()  # Python imported the user's file, not this package
    guide = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    assert "__path__ attribute not found on 'train' while trying to find 'train.fit'" in guide
    assert "irreid-train fit" in guide and "python -P -m train.fit" in guide


def test_the_console_script_and_python_p_work_there(user_folder: Path, tmp_path: Path) -> None:
    script = tmp_path / "bin" / "irreid-train"
    script.parent.mkdir()
    script.write_text(CONSOLE_SCRIPT)
    proc = _run([str(script), "fit", "--preset", "demo", "--print-config"], user_folder)
    assert proc.returncode == 0, proc.stderr
    assert "preset: demo" in proc.stdout and not (user_folder / "ran.txt").exists()
    proc = _run(["-P", "-m", "train.fit", "--print-config"], user_folder)
    assert proc.returncode == 0, proc.stderr
    assert "preset: demo" in proc.stdout and not (user_folder / "ran.txt").exists()
    bad = _run([str(script), "trian"], user_folder)
    assert bad.returncode == 2 and "unknown command 'trian'; valid: fit, evaluate" in bad.stderr
