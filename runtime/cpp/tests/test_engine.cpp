// Engine-file rules without TensorRT: --precision auto/explicit (issue 16 item 1), key checks, the
// sidecar as Python writes it, timing-cache names and batch profiles (issue 16 item 9).
#include <sys/stat.h>

#include <fstream>
#include <string>

#include <doctest/doctest.h>

#include "irreid/build.h"
#include "irreid/engine.h"
#include "irreid/error.h"
#include "irreid/sha256.h"
#include "test_util.h"

namespace {

const irreid::DeviceFacts kOrin{"10.3.0.30", "Orin", "8.7"};

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// A model folder with the given graphs (fake bytes: only their sha256 matters here).
std::string model_dir(const std::string& name, std::initializer_list<const char*> graphs) {
    const std::string dir = irreid::test::scratch_dir() + "/" + name;
    ::mkdir(dir.c_str(), 0755);
    ::mkdir((dir + "/engines").c_str(), 0755);
    for (const char* g : graphs) write(dir + "/" + g, std::string("graph ") + g);
    return dir;
}

// An engine + sidecar whose key records `facts` and the sha256 of the graph now in the folder.
void fake_engine(const std::string& dir, const std::string& precision, const irreid::DeviceFacts& facts) {
    const std::string engine = irreid::engine_file(dir, "ir", precision);
    write(engine, "plan bytes");
    const nlohmann::json key = {{"onnx_sha256", irreid::file_sha256_hex(irreid::trt_graph_file(dir, "ir", precision))},
                                {"trt_version", facts.trt_version}, {"gpu_name", facts.gpu_name},
                                {"compute_capability", facts.compute_capability}, {"precision", precision}, {"profile", {1, 8, 32}}};
    write(engine + ".json", irreid::sidecar_text(key, irreid::sha256_hex("plan bytes", 10), "t", nlohmann::json::object(),
                                                 nlohmann::json::object()));
}

}  // namespace

TEST_CASE("precision_option_values") {
    for (const char* ok : {"auto", "fp32", "fp16", "int8"}) CHECK_NOTHROW(irreid::check_precision_option(ok));
    CHECK_THROWS_CONTAINING(irreid::check_precision_option("fp8"), "valid values: auto, fp32, fp16, int8");
}

TEST_CASE("build_precision_auto_takes_the_fastest_graph") {
    const std::string fp32_only = model_dir("fp32_only", {"ir.onnx"});
    CHECK_EQ(irreid::choose_build_precision(fp32_only, "ir", "auto").precision, std::string("fp32"));
    const std::string all = model_dir("all_graphs", {"ir.onnx", "ir.fp16.onnx", "ir.int8.onnx", "ir.int8-cpu.onnx"});
    CHECK_EQ(irreid::choose_build_precision(all, "ir", "auto").precision, std::string("int8"));
    // ir.int8-cpu.onnx is ONNX Runtime's graph, not TensorRT's: it does not make an int8 build possible.
    const std::string cpu_int8 = model_dir("cpu_int8", {"ir.onnx", "ir.fp16.onnx", "ir.int8-cpu.onnx"});
    CHECK_EQ(irreid::choose_build_precision(cpu_int8, "ir", "auto").precision, std::string("fp16"));
    CHECK_THROWS_CONTAINING(irreid::choose_build_precision(cpu_int8, "ir", "int8"), "python -m export.onnx --int8");
    CHECK_THROWS_CONTAINING(irreid::choose_build_precision(cpu_int8, "rgb", "auto"), "no ONNX graph for rgb");
}

TEST_CASE("run_precision_auto_takes_the_fastest_engine_built_for_this_device") {
    const std::string dir = model_dir("engines_mixed", {"ir.onnx", "ir.fp16.onnx", "ir.int8.onnx"});
    CHECK_THROWS_CONTAINING(irreid::choose_run_precision(dir, "ir", "auto", kOrin), "(none built); build one with `irreid-edge-native build");
    fake_engine(dir, "fp32", kOrin);
    CHECK_EQ(irreid::choose_run_precision(dir, "ir", "auto", kOrin).precision, std::string("fp32"));
    fake_engine(dir, "int8", {"10.3.0.30", "Xavier", "7.2"});  // another device's: skipped, not used
    fake_engine(dir, "fp16", kOrin);
    const irreid::PrecisionChoice c = irreid::choose_run_precision(dir, "ir", "auto", kOrin);
    CHECK_EQ(c.precision, std::string("fp16"));
    CHECK(c.reason.find("fastest engine") != std::string::npos);
    fake_engine(dir, "int8", kOrin);
    CHECK_EQ(irreid::choose_run_precision(dir, "ir", "auto", kOrin).precision, std::string("int8"));
    // The graph changed after the build: that engine no longer counts.
    write(irreid::trt_graph_file(dir, "ir", "int8"), "re-exported");
    CHECK_EQ(irreid::choose_run_precision(dir, "ir", "auto", kOrin).precision, std::string("fp16"));
    CHECK(irreid::engine_problem(dir, "ir", "int8", kOrin).find("ONNX sha256") != std::string::npos);
}

TEST_CASE("run_precision_refusals") {
    const std::string dir = model_dir("engines_none", {"ir.onnx"});
    // An explicit int8 on a folder without int8 graphs is an error, never a silent fp32 run.
    CHECK_THROWS_CONTAINING(irreid::choose_run_precision(dir, "ir", "int8", kOrin), "has no int8 graph for ir (ir.int8.onnx)");
    CHECK_EQ(irreid::choose_run_precision(dir, "ir", "fp32", kOrin).precision, std::string("fp32"));
    fake_engine(dir, "fp32", {"8.5.2.2", "Orin", "8.7"});
    CHECK_THROWS_CONTAINING(irreid::choose_run_precision(dir, "ir", "auto", kOrin), "fp32 built for another setup (TensorRT 8.5.2.2 (engine)");
    write(irreid::engine_file(dir, "ir", "fp32") + ".json", "{not json");
    CHECK_EQ(irreid::engine_problem(dir, "ir", "fp32", kOrin), std::string("malformed sidecar"));
}

TEST_CASE("key_mismatches_as_python") {
    const nlohmann::json key = {{"onnx_sha256", std::string(64, 'a')}, {"trt_version", "10.3.0.30"}, {"gpu_name", "Orin"},
                                {"compute_capability", "8.7"}, {"precision", "fp16"}, {"profile", {1, 8, 32}}};
    CHECK(irreid::key_mismatches(key, kOrin, std::string(64, 'a'), "fp16").empty());
    CHECK(irreid::key_mismatches(key, {"10.3.0", "Orin", "8.7"}, "", "fp16").empty());  // headers know M.m.p only
    const auto diff = irreid::key_mismatches(key, {"10.4.0.1", "Thor", "11.0"}, std::string(64, 'b'), "int8");
    REQUIRE(diff.size() == 5);
    CHECK_EQ(diff[0], std::string("TensorRT 10.3.0.30 (engine) != 10.4.0.1 (here)"));
    CHECK_EQ(diff[4], std::string("ONNX sha256 aaaaaaaaaaaa... (engine) != bbbbbbbbbbbb... (the ONNX now)"));
}

TEST_CASE("sidecar_text_is_what_python_writes") {
    // json.dumps(payload, indent=2, sort_keys=True) + "\n" for the same payload (runtime/backends/engine.py write_engine).
    const char* python = R"({
  "build": {
    "build_seconds": 12.5,
    "network_flags": [
      "EXPLICIT_BATCH"
    ],
    "onnx": "../ir.fp16.onnx",
    "strongly_typed": false,
    "workspace_mb": 1024
  },
  "built_at": "2026-11-30T15:00:00+0000",
  "engine_sha256": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
  "format_version": 1,
  "key": {
    "compute_capability": "8.7",
    "gpu_name": "Orin",
    "onnx_sha256": "abababababababababababababababababababababababababababababababab",
    "precision": "fp16",
    "profile": [
      1,
      8,
      32
    ],
    "trt_version": "8.5.2.2"
  },
  "spec": {
    "embedding_dim": 8,
    "input_height": 32,
    "input_width": 16,
    "mean": [
      0.485,
      0.456,
      0.406
    ],
    "modality": "ir",
    "name": "Z\u00fcrich"
  }
}
)";
    std::string ab, cd;
    for (int i = 0; i < 32; ++i) ab += "ab", cd += "cd";
    const nlohmann::json key = {{"onnx_sha256", ab}, {"trt_version", "8.5.2.2"}, {"gpu_name", "Orin"}, {"compute_capability", "8.7"},
                                {"precision", "fp16"}, {"profile", {1, 8, 32}}};
    const nlohmann::json spec = {{"name", "Z\xc3\xbcrich"}, {"modality", "ir"}, {"input_height", 32}, {"input_width", 16},
                                 {"embedding_dim", 8}, {"mean", {0.485, 0.456, 0.406}}};
    const nlohmann::json build = {{"onnx", "../ir.fp16.onnx"}, {"workspace_mb", 1024}, {"strongly_typed", false},
                                  {"network_flags", {"EXPLICIT_BATCH"}}, {"build_seconds", 12.5}};
    CHECK_EQ(irreid::sidecar_text(key, cd, "2026-11-30T15:00:00+0000", build, spec), std::string(python));
}

TEST_CASE("timing_cache_names_and_profiles_as_python") {
    // runtime.backends.engine.timing_cache_path(...) printed these.
    CHECK_EQ(irreid::timing_cache_file("e", "NVIDIA Jetson AGX Orin (64GB)", "8.7", "10.3.0.30"),
             std::string("e/timing-nvidia-jetson-agx-orin-64gb-sm87-trt10.3.0.30.cache"));
    CHECK_EQ(irreid::timing_cache_file("e", "  __", "9.0", "8.5.2.2"), std::string("e/timing-gpu-sm90-trt8.5.2.2.cache"));
    CHECK(irreid::profile_batches(32, 0) == std::array<int, 3>{1, 8, 32});
    CHECK(irreid::profile_batches(4, 0) == std::array<int, 3>{1, 4, 4});
    CHECK(irreid::profile_batches(16, 2) == std::array<int, 3>{1, 2, 16});
    CHECK_THROWS_CONTAINING(irreid::profile_batches(0, 0), "--max-batch 0 is invalid");
    CHECK_THROWS_CONTAINING(irreid::profile_batches(8, 9), "--opt-batch 9 is invalid; it must be an integer in 1..8");
}

TEST_CASE("orin_modules_are_told_apart_as_python") {
    // runtime.backends.engine.l4t_release / memory_gib on the same inputs.
    CHECK_EQ(irreid::l4t_release("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64").value_or("?"),
             std::string("36.4.3"));
    CHECK_EQ(irreid::l4t_release("# R35 (release), REVISION: 5.0, GCID: 1").value_or("?"), std::string("35.5.0"));
    CHECK_FALSE(irreid::l4t_release("Ubuntu 22.04").has_value());
    CHECK_FALSE(irreid::read_l4t_release(irreid::test::scratch_dir() + "/no_nv_tegra_release").has_value());
    CHECK_EQ(irreid::memory_gib(7.4 * 1073741824.0), 7);
    CHECK_EQ(irreid::memory_gib(2.5 * 1073741824.0), 2);  // Python's round(): half to even
    irreid::DeviceFacts nano = kOrin, agx = kOrin;
    nano.sm_count = 8, nano.total_memory_gib = 7, nano.l4t_release = "36.4.3";
    agx.sm_count = 16, agx.total_memory_gib = 61, agx.l4t_release = "36.4.3";
    nlohmann::json key = {{"onnx_sha256", ""}, {"trt_version", "10.3.0.30"}, {"gpu_name", "Orin"}, {"compute_capability", "8.7"},
                          {"precision", "int8"}, {"profile", {1, 8, 32}}, {"sm_count", 16}, {"total_memory_gib", 61},
                          {"l4t_release", "36.4.3"}, {"dla_core", nullptr}};
    CHECK(irreid::key_mismatches(key, agx, "", "int8").empty());
    const auto diff = irreid::key_mismatches(key, nano, "", "int8");
    REQUIRE(diff.size() == 2);
    CHECK_EQ(diff[0], std::string("SM count 16 (engine) != 8 (here)"));
    CHECK_EQ(diff[1], std::string("memory GiB 61 (engine) != 7 (here)"));
    // A sidecar from before these facts were recorded: not compared.
    key["sm_count"] = nullptr, key.erase("total_memory_gib"), key.erase("l4t_release");
    CHECK(irreid::key_mismatches(key, nano, "", "int8").empty());
}

TEST_CASE("fp32_region_of_a_weakly_typed_build") {
    // An int8 body then the L2 normalisation: y = a / sqrt(sum(a * a)), reshaped and cast at the end.
    const std::vector<irreid::LayerView> layers = {
        {"DEQUANTIZE", {"xq", "scale"}, {"x"}, true},        // 0  Q/DQ: never pinned
        {"OTHER", {"x", "w"}, {"a"}, true},                   // 1  the convolution: fp16/int8 as built
        {"ELEMENTWISE", {"a", "a"}, {"sq"}, true},            // 2  the squares feeding the reduction: fp32
        {"REDUCE", {"sq"}, {"s"}, true},                      // 3  fp32
        {"UNARY", {"s"}, {"n"}, true},                        // 4  sqrt, downstream: fp32
        {"ELEMENTWISE", {"a", "n"}, {"y"}, true},             // 5  the division: fp32
        {"SHAPE", {"y"}, {"shape"}, false},                   // 6  shapes: not math
        {"OTHER", {"y", "shape"}, {"z"}, true},               // 7  the reshape: fp32
        {"IDENTITY", {"z"}, {"embeddings"}, true},            // 8  the cast (8.x imports Cast as Identity): not pinned
        {"ELEMENTWISE", {"x", "x"}, {"unrelated"}, true},     // 9  not in the region
    };
    CHECK(irreid::fp32_layer_indices(layers) == std::vector<int>{2, 3, 4, 5, 7});
}

TEST_CASE("dla_engines_have_their_own_file_core_and_fixed_batch") {
    // Issue 29 item 5: a DLA build writes <m>.<p>.dla<N>.engine (runtime/backends/engine.py), the native runtime
    // finds it when no GPU engine is built, sets its core and pads to its fixed batch.
    const std::string dir = model_dir("dla_engine", {"ir.onnx", "ir.fp16.onnx"});
    CHECK_EQ(irreid::engine_file(dir, "ir", "fp16", 1), dir + "/engines/ir.fp16.dla1.engine");
    CHECK_EQ(irreid::find_engine(dir, "ir", "fp16"), dir + "/engines/ir.fp16.engine");  // none built: the GPU name
    write(irreid::engine_file(dir, "ir", "fp16", 1), "plan");
    CHECK_EQ(irreid::find_engine(dir, "ir", "fp16"), dir + "/engines/ir.fp16.dla1.engine");
    CHECK_EQ(irreid::engine_problem(dir, "ir", "fp16", kOrin), std::string("no sidecar ir.fp16.dla1.engine.json"));
    write(irreid::engine_file(dir, "ir", "fp16"), "plan");
    CHECK_EQ(irreid::find_engine(dir, "ir", "fp16"), dir + "/engines/ir.fp16.engine");  // the GPU engine first

    const auto dla = irreid::engine_run(nlohmann::json{{"profile", {8, 8, 8}}, {"dla_core", 1}});
    CHECK_EQ(dla.dla_core, 1);
    CHECK_EQ(dla.fixed_batch, 8);
    const auto gpu = irreid::engine_run(nlohmann::json{{"profile", {1, 8, 32}}, {"dla_core", nullptr}});
    CHECK_EQ(gpu.dla_core, -1);
    CHECK_EQ(gpu.fixed_batch, 0);
    const std::vector<float> two = {1, 2, 3, 4, 5, 6};  // 2 images of 3 floats
    CHECK_EQ(irreid::pad_batch(two, 2, 4, 3), std::vector<float>({1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0}));
    CHECK_THROWS_CONTAINING(irreid::pad_batch(two, 2, 1, 3), "cannot be padded");
}
