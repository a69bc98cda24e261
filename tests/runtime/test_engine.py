"""Engine key, sidecar and compatibility checks: pure logic, fabricated device descriptions, real files."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_onnx import make_tiny_spec

from runtime.backends.engine import (
    EngineKey,
    EngineMismatchError,
    build_command,
    check_engine_key,
    engine_path,
    key_mismatches,
    profile_batches,
    read_sidecar,
    sidecar_path,
    timing_cache_path,
    write_engine,
)
from runtime.spec import SpecError

ROOT = Path(__file__).resolve().parents[2]
SHA_A, SHA_B = "a" * 64, "b" * 64
ORIN = {"trt_version": "10.3.0.30", "gpu_name": "Orin", "compute_capability": "8.7"}


def _key(**kw: object) -> EngineKey:
    base = {"onnx_sha256": SHA_A, **ORIN, "precision": "fp16", "profile": (1, 8, 32)}
    base.update(kw)
    return EngineKey(**base)  # type: ignore[arg-type]


def test_matching_key_has_no_mismatch() -> None:
    assert key_mismatches(_key(), "10.3.0.30", "Orin", "8.7", SHA_A, "fp16") == []
    assert key_mismatches(_key(), "10.3.0.30", "Orin", "8.7", None, "fp16") == []  # ONNX absent: skipped


@pytest.mark.parametrize(("here", "phrase"), [
    ({"trt_version": "8.5.2.2"}, "TensorRT 10.3.0.30 (engine) != 8.5.2.2 (here)"),
    ({"trt_version": "10.3.0.31"}, "TensorRT 10.3.0.30 (engine) != 10.3.0.31 (here)"),
    ({"gpu_name": "NVIDIA GeForce RTX 4090"}, "GPU Orin (engine) != NVIDIA GeForce RTX 4090 (here)"),
    ({"compute_capability": "8.9"}, "compute capability 8.7 (engine) != 8.9 (here)"),
    ({"precision": "int8"}, "precision fp16 (engine) != int8 (here)"),
    ({"onnx_sha256": SHA_B}, "ONNX sha256 aaaaaaaaaaaa... (engine) != bbbbbbbbbbbb... (the ONNX now)"),
])
def test_each_mismatch_is_named(here: dict[str, str], phrase: str) -> None:
    now = {**ORIN, "onnx_sha256": SHA_A, "precision": "fp16", **here}
    diff = key_mismatches(_key(), now["trt_version"], now["gpu_name"], now["compute_capability"],
                          now["onnx_sha256"], now["precision"])
    assert diff == [phrase]


def test_mismatch_refuses_with_the_exact_rebuild_command(tmp_path: Path) -> None:
    model = tmp_path / "my export"
    cmd = build_command(model, "ir", "fp16", (1, 8, 32))
    eng = engine_path(model, "ir", "fp16")
    with pytest.raises(EngineMismatchError) as info:
        check_engine_key(eng, _key(), "10.3.0.30", "NVIDIA Jetson AGX Thor", "11.0", SHA_A, "fp16", cmd)
    msg = str(info.value)
    assert msg.endswith(f"`{cmd}`") and "\n" not in msg and "GPU Orin (engine)" in msg
    # the command is a real, parseable invocation of the build CLI
    argv = shlex.split(cmd)
    assert argv[:2] == ["irreid-edge", "build"] and argv[argv.index("--model") + 1] == str(model)
    from runtime.cli import build_parser

    args = build_parser().parse_args(argv[1:])
    assert (args.precision, args.modality, args.max_batch, args.opt_batch) == ("fp16", "ir", 32, 8)


def test_paths() -> None:
    assert engine_path("/m", "ir", "int8") == Path("/m/engines/ir.int8.engine")
    assert engine_path("/x/osnet.onnx", "rgb", "fp16", is_dir=False) == Path("/x/engines/osnet.fp16.engine")
    assert sidecar_path(Path("/m/engines/ir.int8.engine")) == Path("/m/engines/ir.int8.engine.json")
    p = timing_cache_path("/m/engines", "NVIDIA Jetson AGX Orin (64GB)", "8.7", "10.3.0.30")
    assert p == Path("/m/engines/timing-nvidia-jetson-agx-orin-64gb-sm87-trt10.3.0.30.cache")


@pytest.mark.parametrize(("max_b", "opt", "want"), [(32, None, (1, 8, 32)), (4, None, (1, 4, 4)),
                                                     (32, 16, (1, 16, 32)), (1, 1, (1, 1, 1))])
def test_profile_batches(max_b: int, opt: int | None, want: tuple[int, int, int]) -> None:
    assert profile_batches(max_b, opt) == want


@pytest.mark.parametrize(("max_b", "opt", "match"), [(0, None, "--max-batch 0"), (8, 9, r"--opt-batch 9.*1\.\.8"),
                                                     (8, 0, "--opt-batch 0"), (True, None, "--max-batch True")])
def test_profile_batches_refused(max_b: int, opt: int | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        profile_batches(max_b, opt)


def test_key_round_trip_and_malformed() -> None:
    k = _key()
    assert EngineKey.from_dict(json.loads(json.dumps(k.to_dict()))) == k
    with pytest.raises(SpecError, match="engine key is malformed"):
        EngineKey.from_dict({"onnx_sha256": SHA_A})


def test_sidecar_round_trip_and_torn_pair(tmp_path: Path) -> None:
    spec = make_tiny_spec("ir")
    eng = tmp_path / "engines" / "ir.fp16.engine"
    write_engine(eng, b"plan-bytes", _key(), spec, {"workspace_mb": 1024})
    key, got_spec, payload = read_sidecar(eng)
    assert key == _key() and got_spec == spec and payload["build"]["workspace_mb"] == 1024
    eng.write_bytes(b"another plan")  # engine replaced without its sidecar
    with pytest.raises(SpecError, match="does not match its sidecar"):
        read_sidecar(eng)
    sidecar_path(eng).unlink()
    with pytest.raises(SpecError, match="missing"):
        read_sidecar(eng)
    with pytest.raises(SpecError, match="engine not found; build it"):
        read_sidecar(tmp_path / "nope.engine")


def test_build_without_tensorrt_exits_2_in_one_line(tmp_path: Path) -> None:
    from runtime.backends.trt_compat import tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT is installed here")
    code = "import sys; from runtime.cli import main; sys.exit(main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, "build", "--model", str(tmp_path)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "TensorRT not installed" in lines[0] and "JetPack" in lines[0] and "ONNX Runtime" in lines[0]


# -- issue 16 defect 7: Orin modules share name and compute capability ------------------------------
def test_l4t_release_is_read_from_nv_tegra_release(tmp_path: Path) -> None:
    from runtime.backends.engine import l4t_release, read_l4t_release

    text = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan 8\n"
    assert l4t_release(text) == "36.4.3"
    assert l4t_release("# R35 (release), REVISION: 5.0, GCID: 1\n") == "35.5.0"
    assert l4t_release("Ubuntu 22.04") is None
    (tmp_path / "rel").write_text(text)
    assert read_l4t_release(tmp_path / "rel") == "36.4.3"
    assert read_l4t_release(tmp_path / "absent") is None


@pytest.mark.parametrize(("here", "phrase"), [
    ({"sm_count": 16, "total_memory_gib": 61}, "SM count 8 (engine) != 16 (here)"),   # AGX Orin 64 GB
    ({"sm_count": 8, "total_memory_gib": 15}, "memory GiB 7 (engine) != 15 (here)"),  # Orin NX 16 GB
    ({"sm_count": 8, "total_memory_gib": 7, "l4t_release": "36.3.0"}, "L4T 36.4.3 (engine) != 36.3.0 (here)"),
])
def test_orin_modules_are_told_apart(here: dict[str, object], phrase: str) -> None:
    key = _key(sm_count=8, total_memory_gib=7, l4t_release="36.4.3")  # built on an Orin NX 8 GB, L4T 36.4.3
    now = {"sm_count": 8, "total_memory_gib": 7, "l4t_release": "36.4.3", **here}
    diff = key_mismatches(key, "10.3.0.30", "Orin", "8.7", SHA_A, "fp16", **now)  # type: ignore[arg-type]
    assert phrase in diff
    assert key_mismatches(key, "10.3.0.30", "Orin", "8.7", SHA_A, "fp16", sm_count=8, total_memory_gib=7,
                          l4t_release="36.4.3") == []


def test_a_key_without_device_facts_still_reads_and_is_not_compared_on_them() -> None:
    d = _key().to_dict()
    for k in ("sm_count", "total_memory_gib", "l4t_release", "dla_core"):
        d.pop(k, None)
    key = EngineKey.from_dict(d)
    assert key.sm_count is None and key_mismatches(key, "10.3.0.30", "Orin", "8.7", SHA_A, "fp16", sm_count=16) == []


def test_fixed_batch_profile() -> None:
    """Issue 16 defect 4: a static batch dimension gets min = opt = max."""
    assert profile_batches(32, 8, static_batch=1) == (1, 1, 1)
    assert profile_batches(32, None, static_batch=4) == (4, 4, 4)
    with pytest.raises(ValueError, match="static batch 0 is invalid"):
        profile_batches(32, None, static_batch=0)
