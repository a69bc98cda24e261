"""A Jetson's power mode, clocks and temperatures, for `irreid-edge bench` (None where unreadable).

Latency on a Jetson depends on the nvpmodel power mode and on whether `jetson_clocks` locked the
clocks at the mode's maximum (docs/jetson.md "Power modes and clocks"). `bench` records this state
before and after its runs and warns when the GPU ran below its maximum clock, which means clocks
were not locked or the module throttled (heat or power budget). Everything reads files under a
root folder (sysfs, /etc) and one `nvpmodel -q` call, so tests run it on a fabricated tree.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["power_state", "throttle_warnings"]

# devfreq nodes of Jetson GPUs: Orin ga10b, Xavier gv11b, TX2 gp10b, Thor gb10b (name may carry a unit address)
_GPU_DEVFREQ = re.compile(r"(gpu|ga10b|gv11b|gp10b|gb10b)", re.I)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def nvpmodel_mode(text: str) -> dict[str, Any] | None:
    """`nvpmodel -q` output ('NV Power Mode: MAXN\\n0') -> {"name": "MAXN", "id": 0}."""
    m = re.search(r"NV Power Mode:[ \t]*(\S+)[ \t]*(?:\r?\n\s*(\d+))?", text)
    if not m:
        return None
    return {"name": m.group(1), "id": int(m.group(2)) if m.group(2) else None}


def _nvpmodel(root: Path) -> dict[str, Any] | None:
    """`nvpmodel -q` on this machine; else the mode id nvpmodel saved (/var/lib/nvpmodel/status)."""
    if root == Path("/") and shutil.which("nvpmodel") is not None:
        try:
            r = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=5)
            mode = nvpmodel_mode(r.stdout + r.stderr)
            if mode is not None:
                return mode
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        m = re.search(r"pmode:(\d+)", (root / "var/lib/nvpmodel/status").read_text())
    except OSError:
        return None
    return {"name": None, "id": int(m.group(1))} if m else None


def _gpu_clock(root: Path) -> dict[str, Any] | None:
    for node in sorted((root / "sys/class/devfreq").glob("*")):
        name = (node / "device/of_node/name")
        label = f"{node.name} {name.read_text(errors='replace') if name.is_file() else ''}"
        if _GPU_DEVFREQ.search(label):
            cur, top = _read_int(node / "cur_freq"), _read_int(node / "max_freq")
            if cur is not None:
                return {"node": node.name, "cur_mhz": cur // 1_000_000, "max_mhz": (top or 0) // 1_000_000}
    return None


def _cpu_clock(root: Path) -> dict[str, Any] | None:
    """The slowest online core's clock against the power mode's cap. nvpmodel caps each core
    through cpufreq's ``scaling_max_freq``; ``cpuinfo_max_freq`` is the silicon's maximum, which
    only MAXN reaches, so comparing with it warned after `sudo jetson_clocks` in every other mode
    (Linux cpufreq user guide: scaling_max_freq is the policy limit, cpuinfo_max_freq the hardware's)."""
    cur, top = [], []
    for policy in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        c = _read_int(policy / "scaling_cur_freq")
        if c:
            cur.append(c)
            t = _read_int(policy / "scaling_max_freq") or _read_int(policy / "cpuinfo_max_freq")
            if t:
                top.append(t)
    if not cur:
        return None
    return {"cur_mhz": min(cur) // 1000, "max_mhz": (min(top) if top else 0) // 1000}


def _max_temp(root: Path) -> float | None:
    temps = [_read_int(p) for p in (root / "sys/class/thermal").glob("thermal_zone*/temp")]
    vals = [t for t in temps if t is not None and t > 0]
    return round(max(vals) / 1000.0, 1) if vals else None


def power_state(root: str | Path = "/") -> dict[str, Any]:
    """{"nvpmodel": {...}|None, "gpu_clock": {...}|None, "cpu_clock": {...}|None, "max_temp_c": float|None}."""
    r = Path(root)
    return {"nvpmodel": _nvpmodel(r), "gpu_clock": _gpu_clock(r), "cpu_clock": _cpu_clock(r),
            "max_temp_c": _max_temp(r)}


def throttle_warnings(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """One line per sign that the run was slower than the power mode allows."""
    out = []
    for key, what in (("gpu_clock", "GPU"), ("cpu_clock", "CPU")):
        a = after.get(key)
        if a and a.get("max_mhz") and a["cur_mhz"] < a["max_mhz"]:
            out.append(f"{what} clock {a['cur_mhz']} MHz is below its maximum {a['max_mhz']} MHz after the run: "
                       f"clocks not locked or throttled; run `sudo jetson_clocks` and keep the module cool")
    b_gpu, a_gpu = before.get("gpu_clock"), after.get("gpu_clock")
    if b_gpu and a_gpu and a_gpu["cur_mhz"] < b_gpu["cur_mhz"]:
        out.append(f"GPU clock fell from {b_gpu['cur_mhz']} to {a_gpu['cur_mhz']} MHz during the run (throttling)")
    return out
