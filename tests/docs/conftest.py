"""Fixtures for the user-guide tests: the shared `smoke` folder and a foreign ONNX."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from doc_blocks import extract_blocks  # noqa: E402
from doc_runner import SMOKE_DOC, BlockRun, make_foreign_onnx, run_block  # noqa: E402


@pytest.fixture(scope="session")
def smoke_workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[BlockRun]]:
    """The folder docs/getting-started.md's runnable blocks leave behind (each block's result kept)."""
    work = tmp_path_factory.mktemp("smoke")
    runs = []
    for block in (b for b in extract_blocks(SMOKE_DOC) if b.runnable):
        run = run_block(block, work)
        runs.append(run)
        if run.returncode != 0:
            break
    return work, runs


@pytest.fixture(scope="session")
def foreign_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_foreign_onnx(tmp_path_factory.mktemp("foreign") / "foreign.onnx")
