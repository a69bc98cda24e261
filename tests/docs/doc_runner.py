"""Running the user guide's runnable blocks: the environment, one block, seeding a folder, a foreign ONNX."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from doc_blocks import ROOT, Block

BLOCK_TIMEOUT_S = 300
SMOKE_DOC = ROOT / "docs" / "getting-started.md"
_CONSOLE = "import sys; from runtime.cli import main; sys.exit(main())"


@dataclass
class BlockRun:
    block: Block
    returncode: int
    output: str


def _bin_dir(tmp: Path) -> Path:
    """The venv's bin first on PATH; an `irreid-edge` shim where the console script is not installed."""
    venv_bin = Path(sys.executable).parent
    if (venv_bin / "irreid-edge").exists():
        return venv_bin
    shim_dir = tmp / "bin"
    shim_dir.mkdir(exist_ok=True)
    shim = shim_dir / "irreid-edge"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{_CONSOLE}" "$@"\n')
    shim.chmod(0o755)
    return shim_dir


def doc_env(workdir: Path) -> dict[str, str]:
    bins = [str(_bin_dir(workdir)), str(Path(sys.executable).parent)]
    native = os.environ.get("IRREID_NATIVE_EXE")
    if native:
        bins.append(str(Path(native).resolve().parent))
    return {
        **os.environ,
        "PATH": os.pathsep.join([*bins, os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "IRREID_RUNS": str(workdir / "runs"),
        "IRREID_CACHE": str(workdir / ".cache"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        "MPLBACKEND": "Agg",
    }


def run_block(block: Block, workdir: Path) -> BlockRun:
    script = "set -euo pipefail\n" + block.text
    proc = subprocess.run(["bash", "-c", script], cwd=workdir, env=doc_env(workdir), capture_output=True,
                          text=True, timeout=BLOCK_TIMEOUT_S)
    return BlockRun(block, proc.returncode, proc.stdout + proc.stderr)


def failure_message(run: BlockRun) -> str:
    tail = "\n".join(run.output.strip().splitlines()[-25:])
    return f"{run.block.where}: runnable block exited {run.returncode}\n--- block ---\n{run.block.text}--- output (tail) ---\n{tail}"


def _link_large(src: str, dst: str) -> str:
    # Models and checkpoints are replaced atomically (rename), never edited in place: hard links are safe
    # for them and save copying hundreds of MB per document. Small files (logs, JSON) are copied.
    if os.path.getsize(src) > (4 << 20):
        try:
            os.link(src, dst)
            return dst
        except OSError:
            pass
    return shutil.copy2(src, dst)


def seed_copy(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True, copy_function=_link_large)




def make_foreign_onnx(path: Path) -> Path:
    """A re-ID-style ONNX as torchreid / fast-reid export them: input 'input' [N,3,64,32] ImageNet-normalised,
    output 'output' [N,32] not L2-normalised, no irreid-edge metadata."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 1.0, (8 * 4, 32)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv_w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[16, 8], strides=[16, 8]),  # (N, 8, 2, 2)
        helper.make_node("Reshape", ["p", "flat"], ["f"]),  # (N, 32)
        helper.make_node("MatMul", ["f", "fc_w"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "foreign",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 64, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path
