"""One source per choice list (issue 19 item 8), and bench's power-mode reading (issue 16)."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from runtime.base import choices
from runtime.power import nvpmodel_mode, power_state, throttle_warnings

ROOT = Path(__file__).resolve().parents[2]
LISTS = {frozenset(choices.PRECISIONS), frozenset(choices.MODALITIES), frozenset(choices.MODALITY_CHOICES),
         frozenset(choices.INFERENCE_BACKENDS), frozenset(choices.INFERENCE_BACKEND_CHOICES),
         frozenset(choices.SEARCH_BACKENDS)}


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for p in a.choices.values():
                out += _subparsers(p)
    return out


def test_every_parser_choice_list_is_the_shared_one() -> None:
    from runtime.cli import build_parser
    from train.evaluate.cli import get_args_parser

    shared = [v for k, v in vars(choices).items() if k.isupper() and isinstance(v, tuple)]
    for parser in [*_subparsers(build_parser()), get_args_parser()]:
        for a in parser._actions:
            if a.choices is not None and frozenset(map(str, a.choices)) in LISTS:
                assert any(a.choices is s for s in shared), f"{parser.prog} {a.option_strings}: retyped choices"


def test_no_choice_list_is_retyped_in_the_source() -> None:
    offenders = []
    for pkg in ("runtime", "export", "calib", "train/evaluate"):
        for f in (ROOT / pkg).rglob("*.py"):
            if f.name == "choices.py":
                continue
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, (ast.Tuple, ast.List)) and node.elts and \
                        all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                    values = frozenset(e.value for e in node.elts)  # type: ignore[attr-defined]
                    if len(values) > 1 and values in LISTS:
                        offenders.append(f"{f.relative_to(ROOT)}:{node.lineno} {sorted(values)}")
    assert not offenders, offenders


def test_inference_and_search_backends_have_different_names() -> None:
    import runtime.encoder
    import runtime.search.rank

    assert not hasattr(runtime.encoder, "BACKENDS") and not hasattr(runtime.search.rank, "BACKENDS")


def _sysfs(root: Path, gpu_cur: int, gpu_max: int) -> Path:
    gpu = root / "sys/class/devfreq/17000000.ga10b"
    gpu.mkdir(parents=True)
    (gpu / "cur_freq").write_text(f"{gpu_cur}\n")
    (gpu / "max_freq").write_text(f"{gpu_max}\n")
    for i in range(2):
        cpu = root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        cpu.mkdir(parents=True)
        (cpu / "scaling_cur_freq").write_text("2201600\n")
        (cpu / "cpuinfo_max_freq").write_text("2201600\n")
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("51500\n")
    (root / "var/lib/nvpmodel").mkdir(parents=True)
    (root / "var/lib/nvpmodel/status").write_text("pmode:0000 fmode:quiet\n")
    return root


def test_power_state_of_an_orin(tmp_path: Path) -> None:
    state = power_state(_sysfs(tmp_path, 1_300_500_000, 1_300_500_000))
    assert state["nvpmodel"] == {"name": None, "id": 0}
    assert state["gpu_clock"] == {"node": "17000000.ga10b", "cur_mhz": 1300, "max_mhz": 1300}
    assert state["cpu_clock"] == {"cur_mhz": 2201, "max_mhz": 2201} and state["max_temp_c"] == 51.5
    assert throttle_warnings(state, state) == []
    assert nvpmodel_mode("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}


def test_throttling_is_warned(tmp_path: Path) -> None:
    before = power_state(_sysfs(tmp_path / "a", 1_300_500_000, 1_300_500_000))
    after = power_state(_sysfs(tmp_path / "b", 624_750_000, 1_300_500_000))
    warn = throttle_warnings(before, after)
    assert any("GPU clock 624 MHz is below its maximum 1300 MHz" in w and "jetson_clocks" in w for w in warn)
    assert any("fell from 1300 to 624 MHz" in w for w in warn)


def test_not_a_jetson(tmp_path: Path) -> None:
    assert power_state(tmp_path) == {"nvpmodel": None, "gpu_clock": None, "cpu_clock": None, "max_temp_c": None}


def test_a_locked_non_maxn_mode_is_not_called_throttled(tmp_path: Path) -> None:
    """Issue 29 item 4: in a capped power mode (e.g. AGX Orin 30 W) `jetson_clocks` locks the CPUs
    at the mode's scaling_max_freq, below cpuinfo_max_freq; that is the maximum to compare with."""
    root = _sysfs(tmp_path, 816_000_000, 816_000_000)  # the mode's GPU cap, locked
    for i in range(2):
        cpu = root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        (cpu / "scaling_cur_freq").write_text("1728000\n")
        (cpu / "scaling_max_freq").write_text("1728000\n")  # the mode's cap; cpuinfo_max_freq stays 2201600
    state = power_state(root)
    assert state["cpu_clock"] == {"cur_mhz": 1728, "max_mhz": 1728}
    assert throttle_warnings(state, state) == []
    (root / "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq").write_text("1190400\n")  # really throttled
    warn = throttle_warnings(state, power_state(root))
    assert any("CPU clock 1190 MHz is below its maximum 1728 MHz" in w for w in warn)
