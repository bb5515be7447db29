// The transformers/bitsandbytes 4-bit checkpoint layout: save_hf_dir of a 4-bit model and
// load_model of the directory give back the same bytes and logits; broken 4-bit tensors are
// clear errors. (tests/reference/check_bnb_layout.py compares the files with real bitsandbytes.)
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_write.h"
#include "io/safetensors.h"
#include "load/bnb_layout.h"
#include "load/loader.h"
#include "load/tensor_io.h"
#include "load_checks.h"
#include "model/linear.h"
#include "quant/nf4.h"
#include "tiny_model.h"

namespace fs = std::filesystem;
using namespace sllm;

namespace {

using Tensors = std::vector<std::pair<std::string, at::Tensor>>;

std::string temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("sllm_bnb_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d.string();
}

// A copy of m whose decoder Linears are 4-bit (those `which` selects; all by default).
std::shared_ptr<model::LlamaModel> to_4bit(
    const model::LlamaModel& m, const quant::Nf4Options& o,
    const std::function<bool(const model::Linear&)>& which = nullptr) {
  return std::make_shared<model::LlamaModel>(m.map_linears([&](int64_t, const model::Linear& l) {
    if (which && !which(l)) return l;
    std::vector<quant::Nf4Weight> q;
    for (int p = 0; p < static_cast<int>(l.parts.size()); ++p) {
      auto w = l.dense_part(p).contiguous();
      q.push_back(quant::quantize_nf4(w.data_ptr<float>(), w.sizes().vec(), o));
    }
    return model::make_nf4_linear(l.parts, std::move(q), l.bias);
  }));
}

load::LoadedModel loaded(std::shared_ptr<const model::LlamaModel> m) {
  load::LoadedModel lm;
  lm.model = std::move(m);
  lm.tokenizer = fixtures::tiny_tokenizer();
  return lm;
}

std::vector<const model::Linear*> linears(const model::LlamaModel& m) {
  std::vector<const model::Linear*> out;
  for (const auto& L : m.layers())
    for (const auto& [name, l] : L.linears()) out.push_back(&l);
  return out;
}

// Same format, same packed bytes, absmax, code and quant state (bit for bit).
void expect_same_weights(const model::LlamaModel& a, const model::LlamaModel& b) {
  auto la = linears(a), lb = linears(b);
  ASSERT_EQ(la.size(), lb.size());
  for (size_t i = 0; i < la.size(); ++i) {
    const auto &x = *la[i], &y = *lb[i];
    ASSERT_EQ(x.kind(), y.kind()) << i;
    ASSERT_EQ(x.parts.size(), y.parts.size());
    for (size_t p = 0; p < x.parts.size(); ++p) {
      EXPECT_EQ(x.parts[p].name, y.parts[p].name);
      EXPECT_EQ(x.parts[p].rows, y.parts[p].rows);
    }
    EXPECT_EQ(x.bias.defined(), y.bias.defined());
    if (x.bias.defined()) {
      EXPECT_TRUE(at::equal(x.bias, y.bias));
    }
    if (x.is<model::DenseFormat>()) {
      EXPECT_TRUE(at::equal(x.dense_weight(), y.dense_weight())) << i;
      continue;
    }
    const auto &fx = x.get<model::Nf4Format>(), &fy = y.get<model::Nf4Format>();
    EXPECT_TRUE(at::equal(fx.t.packed, fy.t.packed)) << i;
    EXPECT_TRUE(at::equal(fx.t.absmax, fy.t.absmax)) << i;
    EXPECT_TRUE(at::equal(fx.t.code, fy.t.code)) << i;
    EXPECT_EQ(fx.t.out, fy.t.out);
    EXPECT_EQ(fx.t.in, fy.t.in);
    EXPECT_EQ(fx.t.blocksize, fy.t.blocksize);
    ASSERT_EQ(fx.states.size(), fy.states.size());
    for (size_t p = 0; p < fx.states.size(); ++p) {
      const auto &qa = *fx.states[p], &qb = *fy.states[p];
      EXPECT_EQ(qa.absmax_q, qb.absmax_q);
      EXPECT_EQ(qa.absmax, qb.absmax);
      EXPECT_EQ(qa.quant_map, qb.quant_map);
      EXPECT_EQ(qa.nested_absmax, qb.nested_absmax);
      EXPECT_EQ(qa.nested_quant_map, qb.nested_quant_map);
      EXPECT_EQ(qa.offset, qb.offset);
      EXPECT_EQ(qa.shape, qb.shape);
      EXPECT_EQ(quant::quant_state_json(qa), quant::quant_state_json(qb));
    }
  }
}

void expect_same_logits(const model::LlamaModel& a, const model::LlamaModel& b) {
  at::NoGradGuard g;
  at::manual_seed(7);
  auto ids = at::randint(0, 256, {2, 12}, at::kLong);
  auto la = a.forward_full(ids), lb = b.forward_full(ids);
  EXPECT_TRUE(at::equal(la, lb)) << (la - lb).abs().max().item<double>();
}

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(io::read_file(path));
}

// Saves a model (all decoder Linears NF4, double quant) once per test.
struct Saved {
  std::string dir;
  std::shared_ptr<model::LlamaModel> model;
};

Saved save_nf4(const std::string& name) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  quant::Nf4Options o;
  o.double_quant = true;
  Saved s{temp_dir(name), to_4bit(*base, o)};
  load::save_hf_dir(loaded(s.model), s.dir, at::kFloat);
  return s;
}

// Rewrites model.safetensors of dir through fn (the tensors as read, in file order).
void edit_tensors(const std::string& dir, const std::function<void(Tensors&)>& fn) {
  const auto path = (fs::path(dir) / "model.safetensors").string();
  auto t = load::read_tensors(path);
  fn(t);
  fs::remove(path);
  load::write_tensors(path, t);
}

at::Tensor& tensor(Tensors& t, const std::string& name) {
  for (auto& [n, v] : t)
    if (n == name) return v;
  throw std::runtime_error("test: no tensor " + name);
}

void erase(Tensors& t, const std::string& name) {
  auto it = std::find_if(t.begin(), t.end(), [&](const auto& e) { return e.first == name; });
  ASSERT_NE(it, t.end()) << name;
  t.erase(it);
}

using fixtures::expect_load_error;

const std::string kQ = "model.layers.1.self_attn.k_proj.weight";

}  // namespace

TEST(BnbLayout, Nf4DoubleQuantRoundTripIsBitExact) {
  auto s = save_nf4("nf4dq");
  // The tensors as transformers saves them (names, dtypes, shapes).
  auto f = io::SafetensorsFile::open((fs::path(s.dir) / "model.safetensors").string());
  const auto& kproj =
      *s.model->layers()[1].qkv.get<model::Nf4Format>().states[1];  // [32, 64]: 2048 values, 32
                                                                    // blocks
  auto expect = [&](const std::string& name, io::DType d, std::vector<int64_t> shape) {
    const auto* v = f.find(name);
    ASSERT_NE(v, nullptr) << name;
    EXPECT_EQ(v->dtype, d) << name;
    EXPECT_EQ(v->shape, shape) << name;
  };
  expect(kQ, io::DType::u8, {1024, 1});
  expect(kQ + ".absmax", io::DType::u8, {32});
  expect(kQ + ".quant_map", io::DType::f32, {16});
  expect(kQ + ".nested_absmax", io::DType::f32, {1});
  expect(kQ + ".nested_quant_map", io::DType::f32, {256});
  const std::string js = quant::quant_state_json(kproj);
  expect(kQ + ".quant_state.bitsandbytes__nf4", io::DType::u8, {int64_t(js.size())});
  const auto* qs = f.find(kQ + ".quant_state.bitsandbytes__nf4");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(qs->data), qs->nbytes), js);
  EXPECT_NE(js.find("\"dtype\": \"float32\", \"shape\": [32, 64], \"nested_blocksize\": 256"),
            std::string::npos)
      << js;
  expect("model.embed_tokens.weight", io::DType::f32, {259, 64});
  expect("model.layers.0.input_layernorm.weight", io::DType::f32, {64});
  EXPECT_EQ(f.find("lm_head.weight"), nullptr);  // tied
  // 2 layers x 7 modules x 6 tensors + embeddings, 2 x 2 norms, final norm
  EXPECT_EQ(f.tensors().size(), 2u * 7 * 6 + 1 + 4 + 1);

  auto qc = read_json((fs::path(s.dir) / "config.json").string())["quantization_config"];
  EXPECT_EQ(qc["quant_method"], "bitsandbytes");
  EXPECT_EQ(qc["load_in_4bit"], true);
  EXPECT_EQ(qc["_load_in_4bit"], true);
  EXPECT_EQ(qc["load_in_8bit"], false);
  EXPECT_EQ(qc["bnb_4bit_quant_type"], "nf4");
  EXPECT_EQ(qc["bnb_4bit_use_double_quant"], true);
  EXPECT_EQ(qc["bnb_4bit_compute_dtype"], "float32");
  EXPECT_EQ(qc["bnb_4bit_quant_storage"], "uint8");
  EXPECT_TRUE(qc["llm_int8_skip_modules"].is_null());

  auto back = load::load_model(s.dir);
  EXPECT_EQ(back.file_tensor_types.at("U8"), 2 * 7 * 3);
  expect_same_weights(*s.model, *back.model);
  expect_same_logits(*s.model, *back.model);
  // Saving what was loaded writes the same file again, byte for byte.
  const auto again = temp_dir("nf4dq_again");
  load::save_hf_dir(back, again, at::kFloat);
  EXPECT_EQ(io::read_file((fs::path(s.dir) / "model.safetensors").string()),
            io::read_file((fs::path(again) / "model.safetensors").string()));
  // Asking for quantization while loading keeps the stored 4-bit modules as they are.
  load::LoadOptions lo;
  lo.quantize = "fp4";
  lo.double_quant = false;
  expect_same_weights(*s.model, *load::load_model(s.dir, lo).model);
  fs::remove_all(s.dir);
  fs::remove_all(again);
}

TEST(BnbLayout, Fp4NoDoubleQuantBiasUntiedRoundTrip) {
  auto base = fixtures::tiny_model(fixtures::tiny_config(/*kv_heads=*/4, /*bias=*/true,
                                                         /*tied=*/false));
  quant::Nf4Options o;
  o.quant_type = "fp4";
  o.blocksize = 128;
  o.double_quant = false;
  auto m = to_4bit(*base, o);
  const auto dir = temp_dir("fp4");
  load::save_hf_dir(loaded(m), dir, at::kFloat);
  auto f = io::SafetensorsFile::open((fs::path(dir) / "model.safetensors").string());
  const auto* am = f.find("model.layers.0.mlp.down_proj.weight.absmax");  // 64 x 96 / 128
  ASSERT_NE(am, nullptr);
  EXPECT_EQ(am->dtype, io::DType::f32);
  EXPECT_EQ(am->shape, std::vector<int64_t>{48});
  EXPECT_EQ(f.find("model.layers.0.mlp.down_proj.weight.nested_absmax"), nullptr);
  EXPECT_NE(f.find("model.layers.0.mlp.down_proj.weight.quant_state.bitsandbytes__fp4"), nullptr);
  const auto* bias = f.find("model.layers.0.self_attn.q_proj.bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(bias->dtype, io::DType::f32);
  EXPECT_NE(f.find("lm_head.weight"), nullptr);
  auto qc = read_json((fs::path(dir) / "config.json").string())["quantization_config"];
  EXPECT_EQ(qc["bnb_4bit_quant_type"], "fp4");
  EXPECT_EQ(qc["bnb_4bit_use_double_quant"], false);

  auto back = load::load_model(dir);
  expect_same_weights(*m, *back.model);
  expect_same_logits(*m, *back.model);
  EXPECT_EQ(back.model->layers()[0].qkv.format_name(), "fp4 (blocksize 128)");
  fs::remove_all(dir);
}

TEST(BnbLayout, DenseModulesStayDenseAndAreListedAsSkipped) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  quant::Nf4Options o;
  auto m =
      to_4bit(*base, o, [](const model::Linear& l) { return l.parts[0].name != "mlp.down_proj"; });
  const auto dir = temp_dir("mixed");
  load::save_hf_dir(loaded(m), dir, at::kFloat);
  auto qc = read_json((fs::path(dir) / "config.json").string())["quantization_config"];
  EXPECT_EQ(
      qc["llm_int8_skip_modules"],
      nlohmann::json({"model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj", "lm_head"}));
  auto back = load::load_model(dir);
  EXPECT_TRUE(back.model->layers()[0].down.is<model::DenseFormat>());
  EXPECT_TRUE(back.model->layers()[0].o.is<model::Nf4Format>());
  expect_same_weights(*m, *back.model);
  expect_same_logits(*m, *back.model);
  fs::remove_all(dir);
}

TEST(BnbLayout, DenseModelSavesWithoutQuantizationConfig) {
  auto m = fixtures::tiny_model(fixtures::tiny_config());
  const auto dir = temp_dir("dense");
  load::save_hf_dir(loaded(m), dir, at::kBFloat16);
  EXPECT_FALSE(read_json((fs::path(dir) / "config.json").string()).contains("quantization_config"));
  auto f = io::SafetensorsFile::open((fs::path(dir) / "model.safetensors").string());
  EXPECT_EQ(f.find(kQ)->dtype, io::DType::bf16);
  auto back = load::load_model(dir);
  EXPECT_TRUE(back.model->layers()[1].qkv.is<model::DenseFormat>());
  fs::remove_all(dir);
}

TEST(BnbLayout, BrokenQuantTensorsAreClearErrors) {
  auto s = save_nf4("broken");
  const auto file = (fs::path(s.dir) / "model.safetensors").string();
  const auto clean = io::read_file(file);
  auto restore = [&] { io::write_file_atomic(file, clean); };
  auto check = [&](const std::string& what, const std::function<void(Tensors&)>& fn,
                   const std::vector<std::string>& parts) {
    SCOPED_TRACE(what);
    restore();
    edit_tensors(s.dir, fn);
    expect_load_error(s.dir, parts);
  };
  check("truncated weight",
        [](Tensors& t) { tensor(t, kQ) = tensor(t, kQ).narrow(0, 0, 1000).clone(); },
        {file, kQ, "shape [1000, 1]", "[1024, 1]"});
  check("weight stored as fp16 (another quant_storage)",
        [](Tensors& t) {
          tensor(t, kQ) = at::zeros({512, 1}, at::kHalf);
        },
        {file, kQ, "F16", "uint8"});
  check("missing absmax", [](Tensors& t) { erase(t, kQ + ".absmax"); },
        {kQ + ".absmax", "missing"});
  check("short absmax",
        [](Tensors& t) {
          tensor(t, kQ + ".absmax") = tensor(t, kQ + ".absmax").narrow(0, 0, 31).clone();
        },
        {file, kQ + ".absmax", "[31]"});
  check("fp32 absmax with a double-quant state",
        [](Tensors& t) { tensor(t, kQ + ".absmax") = at::ones({32}, at::kFloat); },
        {kQ + ".absmax", "F32", "U8"});
  check("quant_map of 15", [](Tensors& t) { tensor(t, kQ + ".quant_map") = at::zeros({15}); },
        {kQ + ".quant_map", "[15]"});
  check("NaN in nested_absmax",
        [](Tensors& t) { tensor(t, kQ + ".nested_absmax").fill_(std::nan("")); },
        {kQ + ".nested_absmax", "invalid value"});
  check("missing nested_quant_map", [](Tensors& t) { erase(t, kQ + ".nested_quant_map"); },
        {kQ + ".nested_quant_map", "missing"});
  auto set_state = [](const std::string& js) {
    return [js](Tensors& t) {
      auto& v = tensor(t, kQ + ".quant_state.bitsandbytes__nf4");
      v = at::empty({int64_t(js.size())}, at::kByte);
      std::memcpy(v.data_ptr(), js.data(), js.size());
    };
  };
  check("quant state not JSON", set_state("{\"quant_type\": \"nf4\", "),
        {file, kQ + ".quant_state.bitsandbytes__nf4", "not valid JSON"});
  check("quant state with another shape",
        set_state("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", "
                  "\"shape\": [64, 32], \"nested_blocksize\": 256, \"nested_dtype\": "
                  "\"float32\", \"nested_offset\": 0.1}"),
        {kQ + ".quant_state.bitsandbytes__nf4", "[64, 32]", "[32, 64]"});
  check("quant state with blocksize 32",
        set_state("{\"quant_type\": \"nf4\", \"blocksize\": 32, \"dtype\": \"float32\", "
                  "\"shape\": [32, 64], \"nested_blocksize\": 256, \"nested_dtype\": "
                  "\"float32\", \"nested_offset\": 0.1}"),
        {"blocksize 32"});
  check("quant state without blocksize",
        set_state("{\"quant_type\": \"nf4\", \"dtype\": \"float32\", \"shape\": [32, 64]}"),
        {"\"blocksize\""});
  check("uint8 weight without quant state",
        [](Tensors& t) { erase(t, kQ + ".quant_state.bitsandbytes__nf4"); },
        {file, kQ, "uint8", "quant_state"});
  check("k_proj 4-bit, q_proj dense",
        [](Tensors& t) {
          const std::string q = "model.layers.1.self_attn.q_proj.weight";
          for (const char* sfx : {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
                                  ".quant_state.bitsandbytes__nf4"})
            erase(t, q + sfx);
          tensor(t, q) = at::zeros({64, 64});
        },
        {"partly in 4 bits"});

  // A file cut short is caught when it is opened.
  restore();
  io::write_file_atomic(file, clean.substr(0, clean.size() - 100));
  EXPECT_THROW(load::load_model(s.dir), Error);

  // quantization_config: other methods and 8-bit are refused by name.
  restore();
  const auto cfg_path = (fs::path(s.dir) / "config.json").string();
  const auto cfg = read_json(cfg_path);
  auto with_qc = [&](const nlohmann::json& qc, const std::vector<std::string>& parts) {
    auto c = cfg;
    c["quantization_config"] = qc;
    io::write_file_atomic(cfg_path, c.dump(2));
    expect_load_error(s.dir, parts);
  };
  with_qc({{"quant_method", "gptq"}, {"bits", 4}}, {cfg_path, "'gptq'", "not supported"});
  with_qc({{"quant_method", "bitsandbytes"}, {"load_in_8bit", true}}, {cfg_path, "8-bit"});
  with_qc({{"quant_method", "bitsandbytes"},
           {"load_in_4bit", true},
           {"bnb_4bit_quant_storage", "bfloat16"}},
          {"bnb_4bit_quant_storage", "bfloat16"});
  io::write_file_atomic(cfg_path, cfg.dump(2));
  EXPECT_NO_THROW(load::load_model(s.dir));
  fs::remove_all(s.dir);
}
