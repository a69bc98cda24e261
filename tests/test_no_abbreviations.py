"""No command-line parser accepts an abbreviated option (issue 19 item 1).

argparse's default ``allow_abbrev=True`` turned the AGW/DDAG habit ``--trial 3`` into ``--trials 3``
(three trials scored by one model); ``match --top 3`` and ``--prec int8`` were accepted too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "train", "export", "calib", "bench", "scripts")


def _parser_calls(path: Path) -> list[tuple[int, bool]]:
    """(line, passes allow_abbrev=False) for every ArgumentParser(...) / .add_parser(...) call in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name not in ("ArgumentParser", "add_parser"):
            continue
        ok = any(k.arg == "allow_abbrev" and isinstance(k.value, ast.Constant) and k.value.value is False
                 for k in node.keywords)
        out.append((node.lineno, ok))
    return out


def test_every_parser_refuses_abbreviations() -> None:
    files = [f for pkg in PACKAGES if (ROOT / pkg).is_dir() for f in sorted((ROOT / pkg).rglob("*.py"))]
    calls = {f: _parser_calls(f) for f in files}
    found = sum(len(c) for c in calls.values())
    assert found >= 15, f"only {found} parser constructions found: is the scan looking in the right place?"
    bad = [f"{f.relative_to(ROOT)}:{line}" for f, c in calls.items() for line, ok in c if not ok]
    assert not bad, f"parsers without allow_abbrev=False: {bad}"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("abbrev", [["--top", "3"], ["--prec", "int8"]])
def test_match_refuses_an_abbreviated_option(abbrev: list[str], tmp_path: Path) -> None:
    proc = _run("-c", "import sys; from runtime.cli import main; sys.exit(main())", "match", "--probe", "p.jpg",
                "--gallery", str(tmp_path), *abbrev)
    assert proc.returncode == 2
    assert f"unrecognized arguments: {' '.join(abbrev)}" in proc.stderr


def test_train_modules_refuse_abbreviations() -> None:
    from train.evaluate.cli import get_args_parser as evaluate_parser
    from train.fit import get_args_parser as fit_parser

    for parser, argv in ((fit_parser(), ["--epoch", "3"]), (evaluate_parser(), ["--checkpoint", "c.pt", "--shot", "1"])):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(argv)
        assert e.value.code == 2
