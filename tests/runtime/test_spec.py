from __future__ import annotations

import json

import pytest

from runtime.spec import (
    ModelSpec,
    SpecError,
    file_sha256,
    get_onnx_metadata,
    read_spec_json,
    set_onnx_metadata,
    spec_from_onnx_metadata,
    write_spec_json,
)


def _spec(**kw) -> ModelSpec:
    base = dict(name="dat_resnet50", modality="ir", input_height=288, input_width=144, embedding_dim=1536)
    base.update(kw)
    return ModelSpec(**base)


def test_json_round_trip_is_exact():
    spec = _spec(calibration={"method": "entropy", "images": 512}, checkpoint_sha256="ab" * 32, opset=17)
    back = ModelSpec.from_json(spec.to_json())
    assert back == spec
    assert back.fingerprint() == spec.fingerprint()
    assert json.loads(spec.to_json())["mean"] == list(spec.mean)


def test_sequences_normalised_to_tuples():
    a = _spec(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    b = _spec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert a == b and hash(a) is not None


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("modality", "thermal", "valid values: rgb, ir"),
        ("input_height", 0, "positive integer"),
        ("input_width", "144", "positive integer"),
        ("embedding_dim", True, "positive integer"),
        ("stripes", 10, "at most 9"),
        ("precision", "int4", "fp32, fp16, int8"),
        ("std", (1.0, 0.0, 1.0), "three positive numbers"),
        ("mean", (0.1, 0.2), "three numbers"),
        ("channel_order", "rgb", "RGB, BGR"),
        ("checkpoint_sha256", "xyz", "sha256"),
        ("format_version", 99, "re-export"),
        ("normalize", "both", "graph, preprocess"),
    ],
)
def test_validation_names_the_field(field, value, needle):
    with pytest.raises(SpecError) as e:
        _spec(**{field: value})
    msg = str(e.value)
    assert f"ModelSpec.{field}=" in msg and needle in msg
    assert "\n" not in msg


def test_unknown_and_missing_fields_refused():
    d = _spec().to_dict()
    d["colour"] = 1
    with pytest.raises(SpecError, match=r"unknown field.*colour"):
        ModelSpec.from_dict(d)
    d = _spec().to_dict()
    del d["embedding_dim"]
    with pytest.raises(SpecError, match=r"missing required.*embedding_dim"):
        ModelSpec.from_dict(d)
    with pytest.raises(SpecError, match="malformed"):
        ModelSpec.from_json("{not json")


def test_fingerprint_changes_with_meaningful_fields_only():
    s = _spec()
    assert s.fingerprint() != s.replace(precision="int8").fingerprint()
    assert s.fingerprint() != s.replace(input_height=256).fingerprint()
    assert s.fingerprint() == s.replace(calibration={"x": 1}).fingerprint()


def test_sidecar_json_atomic_and_errors(tmp_path):
    spec = _spec()
    p = tmp_path / "sub" / "spec.json"
    write_spec_json(spec, p)
    assert read_spec_json(p) == spec
    assert [f.name for f in p.parent.iterdir()] == ["spec.json"]  # no temp file left behind
    with pytest.raises(SpecError, match="not found"):
        read_spec_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x"}')
    with pytest.raises(SpecError, match=r"bad\.json.*missing required"):
        read_spec_json(bad)


def test_onnx_metadata_round_trip(tmp_path):
    onnx = pytest.importorskip("onnx")
    from tiny_onnx import make_tiny_onnx, make_tiny_spec

    spec = make_tiny_spec()
    path = make_tiny_onnx(tmp_path / "m.onnx", spec)
    model = onnx.load(str(path))
    assert get_onnx_metadata(model) == spec
    set_onnx_metadata(model, spec.replace(precision="fp16"))  # replaces, never duplicates
    keys = [p.key for p in model.metadata_props]
    assert len(keys) == len(set(keys))
    assert get_onnx_metadata(model).precision == "fp16"
    with pytest.raises(SpecError, match="irreid-edge spec --onnx"):
        spec_from_onnx_metadata({}, "foreign.onnx")
    assert len(file_sha256(path)) == 64
