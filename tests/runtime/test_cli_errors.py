"""Issue 17 items 3, 9 and 10: every failure reachable from the CLI ends in ONE `irreid-edge ...: error:`
line naming the file and the fix, never a traceback; messages that were wrong; NaN never reaches
JSON. Each case runs the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_fixtures import CONSOLE_SCRIPT, REPO, cli, make_good_gallery, make_model_dir, save_crop
from PIL import Image


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gallery")
    make_good_gallery(root, 4)
    return root


def _one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1 and errors[0].startswith("irreid-edge"), proc.stderr
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def _model_with(tmp_path: Path, model: Path, name: str, content: bytes) -> Path:
    m = tmp_path / "m"
    m.mkdir()
    for f in model.iterdir():
        (m / f.name).write_bytes(f.read_bytes())
    (m / name).write_bytes(content)
    return m


def _match(gallery: Path, model: Path, *extra: str, probe_modality: str = "rgb") -> subprocess.CompletedProcess[str]:
    probe = sorted(gallery.glob("*.jpg"))[0]
    return cli("match", "--probe", str(probe), "--gallery", str(gallery), "--model", str(model), "--probe-modality",
               probe_modality, "--index", str(gallery.parent / f"{model.name}-{gallery.name}.irx"), "--rebuild",
               *extra, check=False)


@pytest.mark.parametrize("name, content", [
    ("rgb.onnx", os.urandom(3000)),
    ("rgb.onnx", b"this is a text file, not a model\n" * 10),
    ("rgb.onnx", b""),
    ("rgb.onnx", "truncated"),
    ("ir.onnx", os.urandom(500)),
    ("spec.json", b'[{"encoders": {}}]'),
    ("spec.json", b"{not json"),
])
def test_broken_model_files_are_one_line(tmp_path: Path, model: Path, gallery: Path, name: str,
                                         content: bytes | str) -> None:
    if content == "truncated":
        whole = (model / name).read_bytes()
        content = whole[:len(whole) // 2]
    m = _model_with(tmp_path, model, name, content)  # type: ignore[arg-type]
    proc = _match(gallery, m, probe_modality="ir" if name.startswith("ir") else "rgb")
    _one_error_line(proc, str(m / name))


def test_nan_in_spec_json_is_refused(tmp_path: Path, model: Path, gallery: Path) -> None:
    spec = json.loads((model / "spec.json").read_text())
    spec["encoders"]["rgb"]["std"] = [float("nan")] * 3
    m = _model_with(tmp_path, model, "spec.json", json.dumps(spec).encode())  # writes bare NaN
    _one_error_line(_match(gallery, m), "spec.json", "std", "NaN")


def test_spec_command_refuses_nan(tmp_path: Path) -> None:
    from test_spec_command import make_foreign_onnx

    onnx = tmp_path / "f.onnx"
    make_foreign_onnx(onnx)
    proc = cli("spec", "--onnx", str(onnx), "--height", "32", "--width", "16", "--std", "nan", "nan", "nan",
               check=False)
    _one_error_line(proc, "std", "NaN")
    assert not (tmp_path / "f.onnx.spec.json").exists()


def test_sidecar_size_disagreeing_with_the_graph_is_one_line(tmp_path: Path, gallery: Path) -> None:
    """ONNX Runtime's "Got invalid dimensions" for a hand-edited spec that disagrees with a foreign graph."""
    from test_spec_command import make_foreign_onnx

    onnx = tmp_path / "f.onnx"
    make_foreign_onnx(onnx)
    cli("spec", "--onnx", str(onnx), "--height", "32", "--width", "16")
    side = tmp_path / "f.onnx.spec.json"
    spec = json.loads(side.read_text())
    spec["input_height"] = 64
    side.write_text(json.dumps(spec))
    proc = cli("embed", "--images", str(gallery), "--out", str(tmp_path / "e.npy"), "--model", str(onnx), check=False)
    _one_error_line(proc, str(onnx), "--height")


def test_numbers_argparse_accepts_but_we_must_not(model: Path, gallery: Path) -> None:
    _one_error_line(_match(gallery, model, "--threshold", "nan"), "--threshold")
    _one_error_line(_match(gallery, model, "--threshold", "-0.5"), "--threshold")
    _one_error_line(_match(gallery, model, "--threads", "-1"), "--threads")
    _one_error_line(_match(gallery, model, "--checkpoint-every", "nan"), "--checkpoint-every")


def test_embed_images_file_speaks_of_images(tmp_path: Path, model: Path, gallery: Path) -> None:
    one = sorted(gallery.glob("*.jpg"))[0]
    line = _one_error_line(cli("embed", "--images", str(one), "--out", str(tmp_path / "e.npy"), "--model", str(model),
                               check=False), str(one), "--images")
    assert "--gallery" not in line


def test_quiet_final_error_names_the_first_bad_file(tmp_path: Path, model: Path) -> None:
    g = tmp_path / "bad"
    g.mkdir()
    (g / "fake.jpg").write_bytes(b"not a jpeg")
    (g / "also.png").write_bytes(b"\x89PNG nope")
    proc = cli("index", "--gallery", str(g), "--model", str(model), "--quiet", check=False)
    line = _one_error_line(proc, "first:", "also.png", "and 1 more")
    assert "see the lines above" not in line and len(proc.stderr.strip().splitlines()) == 1
    probe = tmp_path / "p.jpg"
    probe.write_bytes(b"junk")
    proc = cli("match", "--probe", str(probe), "--gallery", str(_good(tmp_path)), "--model", str(model), "--quiet",
               check=False)
    _one_error_line(proc, "first:", str(probe))


def _good(tmp_path: Path) -> Path:
    g = tmp_path / "good"
    if not g.exists():
        make_good_gallery(g, 3)
    return g


def test_probe_folder_skip_notes_name_the_file(tmp_path: Path, model: Path) -> None:
    probes = tmp_path / "probes"
    save_crop(probes / "a.jpg", 1)
    (probes / "notes.txt").write_text("x")
    proc = cli("match", "--probe", str(probes), "--gallery", str(_good(tmp_path)), "--model", str(model))
    notes = [line for line in proc.stderr.splitlines() if "not an image" in line]
    assert len(notes) == 1 and str(probes / "notes.txt") in notes[0], proc.stderr


def test_newline_in_a_file_name_keeps_one_table_row(tmp_path: Path, model: Path) -> None:
    g = _good(tmp_path)
    save_crop(g / "evil\nname.jpg", 99)
    probe = g / "evil\nname.jpg"
    proc = cli("match", "--probe", str(probe), "--gallery", str(g), "--model", str(model), "--probe-modality", "rgb",
               "--top-k", "4")
    rows = [line for line in proc.stdout.splitlines() if line.startswith("  ") and "rank" not in line]
    assert len(rows) == 4 and "evil\\nname.jpg" in rows[0], proc.stdout
    out = json.loads(cli("match", "--probe", str(probe), "--gallery", str(g), "--model", str(model), "--probe-modality",
                         "rgb", "--json").stdout)
    assert out["probes"][0]["results"][0]["path"] == "evil\nname.jpg"  # JSON keeps the real name


def test_broken_pipe_exits_quietly(model: Path, gallery: Path) -> None:
    """`| head -1` used to print "error: [Errno 32] Broken pipe"."""
    cmd = [sys.executable, "-c", CONSOLE_SCRIPT, "match", "--probe", str(sorted(gallery.glob("*.jpg"))[0]),
           "--gallery", str(gallery), "--model", str(model), "--probe-modality", "rgb"]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader leaves before the first write
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert "Broken pipe" not in err and "Traceback" not in err and "error" not in err, err


def _nan_model(path: Path, dim: int = 6) -> Path:
    """A foreign graph whose embedding is log(mean pixel - 128): NaN for dark images, finite for bright."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Sub", ["m", "c128"], ["s"]),
             helper.make_node("Log", ["s"], ["l"]),
             helper.make_node("Unsqueeze", ["l", "ax1"], ["u"]),
             helper.make_node("Mul", ["u", "ones"], ["emb"])]
    graph = helper.make_graph(
        nodes, "nan", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 16])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", dim])],
        [numpy_helper.from_array(np.array(128, np.float32), "c128"),
         numpy_helper.from_array(np.array([1], np.int64), "ax1"),
         numpy_helper.from_array(np.ones((1, dim), np.float32), "ones")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_nan_embeddings_are_skipped_by_name_and_json_stays_valid(tmp_path: Path) -> None:
    """Issue 17 item 3: NaN rows were indexed, ranked arbitrarily, and --json printed bare NaN."""
    onnx = _nan_model(tmp_path / "nan.onnx")
    cli("spec", "--onnx", str(onnx), "--height", "32", "--width", "16", "--in-graph", "--no-l2")
    g = tmp_path / "g"
    g.mkdir()
    Image.new("RGB", (16, 32), (220, 220, 220)).save(g / "bright.png")
    Image.new("RGB", (16, 32), (240, 240, 240)).save(g / "brighter.png")
    Image.new("RGB", (16, 32), (10, 10, 10)).save(g / "dark.png")
    proc = cli("index", "--gallery", str(g), "--model", str(onnx), "--json")
    assert json.loads(proc.stdout)["images"] == 2
    assert any(str(g / "dark.png") in line and "NaN" in line for line in proc.stderr.splitlines()), proc.stderr
    proc = cli("match", "--probe", str(g / "dark.png"), "--gallery", str(g), "--model", str(onnx), "--probe-modality",
               "rgb", "--json", check=False)
    _one_error_line(proc, "no usable probe", str(g / "dark.png"), "NaN")
    out = cli("match", "--probe", str(g / "bright.png"), "--gallery", str(g), "--model", str(onnx), "--probe-modality",
              "rgb", "--json").stdout

    def no_constants(name: str) -> None:
        raise AssertionError(f"invalid JSON constant {name}")

    parsed = json.loads(out, parse_constant=no_constants)
    assert [r["path"] for r in parsed["probes"][0]["results"]] == ["bright.png", "brighter.png"]
