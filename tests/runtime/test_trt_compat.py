"""runtime.backends.trt_compat: the version table as pure logic, for 8.5 (JetPack 5), 10.3 (JetPack 6), 10.x, 11.x."""

from __future__ import annotations

import pytest

from runtime.backends import trt_compat as tc
from runtime.backends.trt_compat import BuildPlan, build_plan, version


def test_version_parsing() -> None:
    assert version("10.3.0.30") == (10, 3, 0, 30)
    assert version("8.6") == version("8.6.0.0") < version("8.6.1")
    assert version("11.0.0+cuda13") == (11, 0, 0, 0)
    assert version("8.5.2.2") < version("10") < version("10.3") < version("11")
    with pytest.raises(ValueError, match="cannot read"):
        version("unknown")


@pytest.mark.parametrize(("v", "explicit", "st_flag", "always_st", "prec_flags", "pool", "io"), [
    ("8.4.1", True, False, False, True, True, False),
    ("8.5.2.2", True, False, False, True, True, True),
    ("10.3.0.30", False, True, False, True, True, True),
    ("10.13.0.35", False, True, False, True, True, True),
    ("11.0.0", False, True, True, False, True, True),
])
def test_predicates(v: str, explicit: bool, st_flag: bool, always_st: bool, prec_flags: bool, pool: bool,
                    io: bool) -> None:
    assert tc.needs_explicit_batch_flag(v) is explicit
    assert tc.has_strongly_typed_flag(v) is st_flag
    assert tc.always_strongly_typed(v) is always_st
    assert tc.has_precision_builder_flags(v) is prec_flags
    assert tc.has_implicit_int8_calibration(v) is prec_flags
    assert tc.has_memory_pool_limit(v) is pool
    assert tc.has_tensor_io_api(v) is io


@pytest.mark.parametrize(("v", "graph", "prec", "plan"), [
    # JetPack 5: weakly typed, explicit batch, flags let TensorRT use the graph's own precision
    ("8.5.2.2", "fp32", "fp32", BuildPlan(("EXPLICIT_BATCH",), (), False)),
    # (FP16 allowed in a weak build: OBEY_PRECISION_CONSTRAINTS keeps the fp32 L2 region, issue 16 defect 6)
    ("8.5.2.2", "fp16", "fp16", BuildPlan(("EXPLICIT_BATCH",), ("FP16", "OBEY_PRECISION_CONSTRAINTS"), False)),
    ("8.5.2.2", "int8", "int8", BuildPlan(("EXPLICIT_BATCH",), ("INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"), False)),
    ("8.5.2.2", "fp32", "fp16", BuildPlan(("EXPLICIT_BATCH",), ("FP16", "OBEY_PRECISION_CONSTRAINTS"), False)),
    # JetPack 6 / 10.x: the exported precision built strongly typed, no precision flags
    ("10.3.0.30", "fp16", "fp16", BuildPlan(("STRONGLY_TYPED",), (), True)),
    ("10.3.0.30", "int8", "int8", BuildPlan(("STRONGLY_TYPED",), (), True)),
    ("10.13.0.35", "fp32", "fp32", BuildPlan(("STRONGLY_TYPED",), (), True)),
    ("10.3.0.30", "fp32", "fp16", BuildPlan((), ("FP16", "OBEY_PRECISION_CONSTRAINTS"), False)),  # foreign fp32
    # 11.x: always strongly typed, no flags at all
    ("11.0.0", "fp16", "fp16", BuildPlan((), (), True)),
    ("11.2.0", "int8", "int8", BuildPlan((), (), True)),
])
def test_build_plan(v: str, graph: str, prec: str, plan: BuildPlan) -> None:
    assert build_plan(v, graph, prec) == plan


@pytest.mark.parametrize(("v", "graph", "prec", "match"), [
    ("11.0.0", "fp32", "fp16", r"strongly typed.*--fp16"),
    ("10.3.0.30", "fp32", "int8", r"int8 \(Q/DQ\) graph.*--int8 --calib"),
    ("8.5.2.2", "fp16", "int8", r"int8 \(Q/DQ\) graph"),
    ("10.3.0.30", "fp16", "fp32", "use --precision fp16"),
    ("8.2.1", "fp32", "fp32", "older than 8.5"),
    ("10.3", "fp32", "bf16", "valid values: fp32, fp16, int8"),
])
def test_build_plan_refusals(v: str, graph: str, prec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_plan(v, graph, prec)


def test_stub_only_tensorrt_is_not_tensorrt() -> None:
    """tensorrt-stubs installs a bare `tensorrt` namespace package; it must not count as TensorRT."""
    import importlib.util

    spec = importlib.util.find_spec("tensorrt")
    if spec is None or spec.origin not in (None, "namespace"):
        pytest.skip("no stubs-only tensorrt package here")
    assert tc.trt_unavailable_reason() == "TensorRT not installed"
    assert tc.tensorrt_available() is False


@pytest.mark.parametrize(("v", "has"), [("8.0.1", False), ("8.2.0", True), ("8.5.2.2", True), ("10.13.0.35", True),
                                        ("11.0.0", False)])
def test_obey_precision_constraints_exists_from_8_2_until_11(v: str, has: bool) -> None:
    assert tc.has_obey_precision_constraints(v) is has


@pytest.mark.parametrize(("v", "graph", "plan"), [
    # before 11 DLA gets fp16/int8 through the weak precision flags, plus GPU fallback
    ("10.3.0.30", "fp16", BuildPlan((), ("FP16", "OBEY_PRECISION_CONSTRAINTS", "GPU_FALLBACK"), False)),
    ("8.5.2.2", "fp16", BuildPlan(("EXPLICIT_BATCH",), ("FP16", "OBEY_PRECISION_CONSTRAINTS", "GPU_FALLBACK"), False)),
    ("10.3.0.30", "int8", BuildPlan((), ("INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS", "GPU_FALLBACK"), False)),
    # 11: strongly typed (the graph's types), only the fallback flag
    ("11.4.1", "fp16", BuildPlan((), ("GPU_FALLBACK",), True)),
])
def test_dla_plans(v: str, graph: str, plan: BuildPlan) -> None:
    assert build_plan(v, graph, graph, dla=True) == plan
    with pytest.raises(ValueError, match="DLA runs fp16 and int8 only"):
        build_plan(v, "fp32", "fp32", dla=True)


def _layers(*spec: tuple[str, str, str]) -> list[tc.LayerView]:
    return [tc.LayerView(kind, tuple(i.split(",")) if i else (), (o,), kind != "SHAPE") for kind, i, o in spec]


def test_fp32_region_is_the_reduction_its_squares_and_everything_after() -> None:
    layers = _layers(("CONVOLUTION", "images", "c"), ("ACTIVATION", "c", "r"), ("MATRIX_MULTIPLY", "r", "f"),
                     ("ELEMENTWISE", "f,f", "sq"), ("REDUCE", "sq", "s"), ("UNARY", "s", "n"),
                     ("ELEMENTWISE", "f,n", "e"), ("SHAPE", "e", "shp"), ("DEQUANTIZE", "e", "dq"))
    assert tc.fp32_layer_indices(layers) == [3, 4, 5, 6]  # not the conv path, not Shape, not Q/DQ


def test_only_weak_builds_with_fp16_pin_layers() -> None:
    assert tc.pins_fp32_layers(build_plan("8.5.2.2", "fp16", "fp16"))
    assert tc.pins_fp32_layers(build_plan("10.3.0.30", "fp32", "fp16"))
    assert not tc.pins_fp32_layers(build_plan("10.3.0.30", "fp16", "fp16"))  # strongly typed: refused there
    assert not tc.pins_fp32_layers(build_plan("8.5.2.2", "fp32", "fp32"))


# -- issue 29 item 3: IEngineInspector JSON, TensorRT 10 and 11 layouts -------------------------------
CONV_10X = {"Name": "conv1", "LayerType": "CaskConvolution", "ParameterType": "Convolution",
            "Inputs": [{"Name": "x", "Dimensions": [8, 64, 72, 36],
                        "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
            "Outputs": [{"Name": "y", "Format/Datatype": "Row major linear FP16 format"}]}
CONV_11X = {"Name": "conv1", "LayerType": "CaskConvolution", "ParameterType": "Convolution",
            "Inputs": [{"Name": "x", "Dimensions": [8, 64, 72, 36], "DataType": "Int8",
                        "Format": "Thirty-two wide channel vectorized row major format (kCHW32)"}],
            "Outputs": [{"Name": "y", "DataType": "Half", "Format": "Row major linear format (kLINEAR)"}]}


@pytest.mark.parametrize("layer", [CONV_10X, CONV_11X], ids=["trt10", "trt11"])
def test_inspector_types_read_in_both_layouts(layer: dict) -> None:
    info = {"Layers": ["a name-only entry", layer]}
    (conv,) = tc.inspector_layers(info)
    assert tc.inspector_tensor_type(conv["Inputs"][0]) == "int8"
    assert tc.inspector_tensor_type(conv["Outputs"][0]) == "fp16"
    assert tc.inspector_tensor_type({"DataType": "Float"}) == "fp32"
    assert tc.inspector_tensor_type({"Format/Datatype": "N/A due to dynamic shapes"}) == ""


@pytest.mark.parametrize(("v", "has"), [("8.5.2.2", False), ("8.6.2.3", False), ("10.3.0.30", True), ("11.4.1", True)])
def test_int8_q_dq_on_dla_is_refused_before_9(v: str, has: bool) -> None:
    """Issue 29 item 5: NVIDIA's 8.x guide has no explicit quantisation on DLA."""
    assert tc.dla_has_explicit_quantization(v) is has
    if has:
        assert "GPU_FALLBACK" in build_plan(v, "int8", "int8", dla=True).builder_flags
    else:
        with pytest.raises(ValueError, match=r"no explicit \(Q/DQ\) int8 on DLA.*--precision fp16 with --dla-core"):
            build_plan(v, "int8", "int8", dla=True)
