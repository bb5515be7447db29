// GPTQ v1, AWQ GEMM and bitsandbytes int8 checkpoints: save_hf_dir of an integer-quantized model
// and load_model of the directory give back the same quantized values and logits; broken tensors
// and configs are clear errors. (tests/reference/check_quant_layout.py unpacks the files with an
// independent Python reader and runs them in transformers.)
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "core/error.h"
#include "io/atomic_write.h"
#include "io/safetensors.h"
#include "load/loader.h"
#include "load/tensor_io.h"
#include "load_checks.h"
#include "model/linear.h"
#include "quant/intq.h"
#include "quant/intq_pack.h"
#include "tiny_model.h"

namespace fs = std::filesystem;
using namespace sllm;

namespace {

using Tensors = std::vector<std::pair<std::string, at::Tensor>>;

std::string temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("sllm_intq_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d.string();
}

float fp16(float x) { return quant::fp16_bits_to_fp32(quant::fp32_to_fp16_bits(x)); }

struct Spec {
  std::string method = "gptq";  // gptq | rtn | awq | int8
  int bits = 4;
  int64_t group_size = 32;  // <= 0: per channel
  bool sym = false;
  bool act_order = false;
  double threshold = 6.0;
};

// Random quantized values for every decoder Linear of m (the values need not come from the
// weights: the layout has to carry whatever a quantizer produced). Zeros include 0 and 2^bits-1.
std::shared_ptr<model::LlamaModel> quantized(const model::LlamaModel& m, const Spec& s,
                                             uint32_t seed = 1) {
  std::mt19937 rng(seed);
  return std::make_shared<model::LlamaModel>(m.map_linears([&](int64_t, const model::Linear& l) {
    at::Tensor bias;
    if (l.bias.defined()) bias = l.bias.to(at::kHalf).to(at::kFloat);  // GPTQ/AWQ store fp16
    const int64_t in = l.in_features();
    if (s.method == "int8") {
      std::vector<quant::Int8Weight> q;
      for (const auto& p : l.parts) {
        quant::Int8Weight w;
        w.out = p.rows;
        w.in = in;
        for (int64_t k = 0; k < w.out * in; ++k)
          w.q.push_back(static_cast<int8_t>(static_cast<int>(rng() % 255) - 127));
        for (int64_t o = 0; o < w.out; ++o) w.scb.push_back(0.01f + (rng() % 1000) * 1.37e-4f);
        q.push_back(std::move(w));
      }
      return model::make_int8_linear(l.parts, q, l.bias, s.threshold);
    }
    const int64_t gs = s.group_size > 0 ? s.group_size : in;
    std::vector<int32_t> g_idx;
    if (s.act_order) {  // a permutation shared by the fused parts, groups of equal size
      std::vector<int64_t> perm(in);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      g_idx.resize(in);
      for (int64_t j = 0; j < in; ++j) g_idx[perm[j]] = static_cast<int32_t>(j / gs);
    }
    const uint32_t levels = 1u << s.bits;
    std::vector<quant::IntQWeight> q;
    for (const auto& p : l.parts) {
      quant::IntQWeight w;
      w.bits = s.bits;
      w.group_size = gs;
      w.out = p.rows;
      w.in = in;
      w.sym = s.sym;
      w.g_idx = g_idx;
      for (int64_t k = 0; k < w.out * in; ++k) w.q.push_back(static_cast<uint8_t>(rng() % levels));
      for (int64_t k = 0; k < w.out * w.groups(); ++k) {
        w.scales.push_back(fp16(0.002f + (rng() % 1000) * 3.1e-5f));
        const uint32_t z = k % 7 == 0 ? 0 : k % 11 == 0 ? levels - 1 : rng() % levels;
        w.zeros.push_back(s.sym ? static_cast<float>(levels / 2) : static_cast<float>(z));
      }
      q.push_back(std::move(w));
    }
    return model::make_intq_linear(l.parts, q, bias, s.method);
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

// Same format and, part by part, the same quantized values, scales, zeros, g_idx and bias.
void expect_same_weights(const model::LlamaModel& a, const model::LlamaModel& b) {
  auto la = linears(a), lb = linears(b);
  ASSERT_EQ(la.size(), lb.size());
  for (size_t i = 0; i < la.size(); ++i) {
    const auto &x = *la[i], &y = *lb[i];
    SCOPED_TRACE(x.parts[0].name + " #" + std::to_string(i));
    ASSERT_EQ(x.kind(), y.kind());
    ASSERT_EQ(x.parts.size(), y.parts.size());
    EXPECT_EQ(x.bias.defined(), y.bias.defined());
    if (x.bias.defined()) {
      EXPECT_TRUE(at::equal(x.bias, y.bias));
    }
    if (x.is<model::DenseFormat>()) {
      EXPECT_TRUE(at::equal(x.dense_weight(), y.dense_weight()));
      continue;
    }
    for (int p = 0; p < static_cast<int>(x.parts.size()); ++p) {
      EXPECT_EQ(x.parts[p].name, y.parts[p].name);
      EXPECT_EQ(x.parts[p].rows, y.parts[p].rows);
      if (x.is<model::Int8Format>()) {
        auto qa = x.int8_part(p), qb = y.int8_part(p);
        EXPECT_EQ(qa.q, qb.q);
        EXPECT_EQ(qa.scb, qb.scb);
        EXPECT_EQ(x.get<model::Int8Format>().t.threshold, y.get<model::Int8Format>().t.threshold);
        continue;
      }
      ASSERT_TRUE(x.is<model::IntQFormat>());
      auto qa = x.intq_part(p), qb = y.intq_part(p);
      EXPECT_EQ(qa.bits, qb.bits);
      EXPECT_EQ(qa.group_size, qb.group_size);
      EXPECT_EQ(qa.out, qb.out);
      EXPECT_EQ(qa.in, qb.in);
      EXPECT_EQ(qa.sym, qb.sym);
      EXPECT_EQ(qa.q, qb.q);
      EXPECT_EQ(qa.scales, qb.scales);
      EXPECT_EQ(qa.zeros, qb.zeros);
      EXPECT_EQ(qa.g_idx, qb.g_idx);
      EXPECT_EQ(x.get<model::IntQFormat>().method, y.get<model::IntQFormat>().method);
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

std::string file(const std::string& dir) { return (fs::path(dir) / "model.safetensors").string(); }

// Saves m, loads it back, checks values and logits, and that saving again gives the same bytes.
load::LoadedModel round_trip(const std::shared_ptr<model::LlamaModel>& m, const std::string& dir) {
  load::save_hf_dir(loaded(m), dir, at::kFloat);
  auto back = load::load_model(dir);
  expect_same_weights(*m, *back.model);
  expect_same_logits(*m, *back.model);
  const auto again = dir + "_again";
  load::save_hf_dir(back, again, at::kFloat);
  EXPECT_EQ(io::read_file(file(dir)), io::read_file(file(again)));
  EXPECT_EQ(io::read_file((fs::path(dir) / "config.json").string()),
            io::read_file((fs::path(again) / "config.json").string()));
  fs::remove_all(again);
  return back;
}

void expect_tensor(const io::SafetensorsFile& f, const std::string& name, io::DType d,
                   std::vector<int64_t> shape) {
  const auto* v = f.find(name);
  ASSERT_NE(v, nullptr) << name;
  EXPECT_EQ(v->dtype, d) << name;
  EXPECT_EQ(v->shape, shape) << name;
}

void edit_tensors(const std::string& dir, const std::function<void(Tensors&)>& fn) {
  auto t = load::read_tensors(file(dir));
  fn(t);
  fs::remove(file(dir));
  load::write_tensors(file(dir), t);
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

const std::string kK = "model.layers.1.self_attn.k_proj";  // [32, 64]
const std::string kDown = "model.layers.0.mlp.down_proj";  // [64, 96]

}  // namespace

TEST(IntqLayout, GptqRoundTripWithBiasIsBitExact) {
  auto base = fixtures::tiny_model(fixtures::tiny_config(2, /*bias=*/true, /*tied=*/false));
  auto m = quantized(*base, {});
  const auto dir = temp_dir("gptq");
  auto back = round_trip(m, dir);
  EXPECT_EQ(back.model->layers()[0].qkv.format_name(), "gptq int4 asym (group 32)");

  auto f = io::SafetensorsFile::open(file(dir));
  expect_tensor(f, kK + ".qweight", io::DType::i32, {64 * 4 / 32, 32});
  expect_tensor(f, kK + ".qzeros", io::DType::i32, {2, 32 * 4 / 32});
  expect_tensor(f, kK + ".scales", io::DType::f16, {2, 32});
  expect_tensor(f, kK + ".g_idx", io::DType::i32, {64});
  expect_tensor(f, kK + ".bias", io::DType::f16, {32});
  expect_tensor(f, kDown + ".qweight", io::DType::i32, {96 * 4 / 32, 64});
  expect_tensor(f, kDown + ".scales", io::DType::f16, {3, 64});
  EXPECT_EQ(f.find(kK + ".weight"), nullptr);
  EXPECT_EQ(f.find(kDown + ".bias"), nullptr);  // no bias: no tensor (AutoGPTQ, GPTQModel)
  expect_tensor(f, "lm_head.weight", io::DType::f32, {259, 64});
  // 2 layers x (3 modules x 5 tensors + 4 modules x 4) + embed, 4 norms, final norm, lm_head
  EXPECT_EQ(f.tensors().size(), 2u * (15 + 16) + 1 + 4 + 1 + 1);

  // One word by hand: qweight[0, o] packs input columns 0..7 of row o, 4 bits each, LSB first.
  const auto q = m->layers()[1].qkv.intq_part(1);
  const auto* qw = f.find(kK + ".qweight");
  for (int64_t o : {0, 5, 31}) {
    uint32_t want = 0;
    for (int i = 0; i < 8; ++i) want |= uint32_t(q.q[o * 64 + i]) << (4 * i);
    uint32_t got;
    std::memcpy(&got, qw->data + o * 4, 4);
    EXPECT_EQ(got, want) << o;
  }
  // qzeros[g, c] packs zero - 1 of columns 8c..8c+7 (whole-word subtraction).
  const auto* qz = f.find(kK + ".qzeros");
  for (int64_t g = 0; g < 2; ++g) {
    uint32_t z = 0;
    for (int k = 0; k < 8; ++k) z |= uint32_t(q.zeros[k * 2 + g]) << (4 * k);
    uint32_t got;
    std::memcpy(&got, qz->data + g * 4 * 4, 4);
    EXPECT_EQ(got, z - 0x11111111u) << g;
  }

  auto qc = read_json((fs::path(dir) / "config.json").string())["quantization_config"];
  EXPECT_EQ(qc["quant_method"], "gptq");
  EXPECT_EQ(qc["checkpoint_format"], "gptq");
  EXPECT_EQ(qc["bits"], 4);
  EXPECT_EQ(qc["group_size"], 32);
  EXPECT_EQ(qc["sym"], false);
  EXPECT_EQ(qc["desc_act"], false);
  EXPECT_EQ(qc["meta"]["sllm_method"], "gptq");
  EXPECT_FALSE(qc.contains("modules_in_block_to_quantize"));

  // Asking for another quantization while loading keeps the stored modules.
  load::LoadOptions lo;
  lo.quantize = "nf4";
  expect_same_weights(*m, *load::load_model(dir, lo).model);
  // Dequantized saving writes dense weights equal to the Linears' own dequantization.
  const auto dense_dir = dir + "_dense";
  load::SaveOptions so;
  so.dequantize = true;
  load::save_hf_dir(back, dense_dir, at::kFloat, so);
  EXPECT_FALSE(
      read_json((fs::path(dense_dir) / "config.json").string()).contains("quantization_config"));
  auto dense = load::load_model(dense_dir);
  auto ld = linears(*dense.model), lq = linears(*m);
  for (size_t i = 0; i < ld.size(); ++i) {
    EXPECT_TRUE(ld[i]->is<model::DenseFormat>());
    for (int p = 0; p < static_cast<int>(lq[i]->parts.size()); ++p)
      EXPECT_TRUE(at::equal(ld[i]->dense_part(p), lq[i]->dense_part(p))) << i << " " << p;
  }
  fs::remove_all(dense_dir);
  fs::remove_all(dir);
}

TEST(IntqLayout, GptqActOrderKeepsThePermutedGIdx) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  Spec s;
  s.act_order = true;
  s.sym = true;
  auto m = quantized(*base, s, 5);
  ASSERT_TRUE(m->layers()[0].qkv.get<model::IntQFormat>().t.perm.defined());
  const auto dir = temp_dir("actorder");
  auto back = round_trip(m, dir);
  auto f = io::SafetensorsFile::open(file(dir));
  const auto* g = f.find(kDown + ".g_idx");
  ASSERT_NE(g, nullptr);
  std::vector<int32_t> stored(96);
  std::memcpy(stored.data(), g->data, g->nbytes);
  EXPECT_EQ(stored, m->layers()[0].down.intq_part(0).g_idx);
  EXPECT_FALSE(std::is_sorted(stored.begin(), stored.end()));
  const auto* z = f.find(kK + ".qzeros");  // symmetric: every zero 8, stored as 7
  int32_t w;
  std::memcpy(&w, z->data, 4);
  EXPECT_EQ(w, 0x77777777);
  auto qc = read_json((fs::path(dir) / "config.json").string())["quantization_config"];
  EXPECT_EQ(qc["desc_act"], true);
  EXPECT_EQ(qc["sym"], true);
  EXPECT_EQ(back.model->layers()[1].down.format_name(), "gptq int4 sym (group 32, act-order)");
  fs::remove_all(dir);
}

TEST(IntqLayout, GptqTwoAndEightBitsPerChannel) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  for (int bits : {2, 8}) {
    SCOPED_TRACE(bits);
    Spec s;
    s.method = "rtn";
    s.bits = bits;
    s.group_size = -1;
    auto m = quantized(*base, s, bits);
    const auto dir = temp_dir("bits" + std::to_string(bits));
    round_trip(m, dir);
    auto f = io::SafetensorsFile::open(file(dir));
    expect_tensor(f, kDown + ".qweight", io::DType::i32, {96 * bits / 32, 64});
    expect_tensor(f, kDown + ".qzeros", io::DType::i32, {1, 64 * bits / 32});
    expect_tensor(f, kDown + ".scales", io::DType::f16, {1, 64});
    auto qc = read_json((fs::path(dir) / "config.json").string())["quantization_config"];
    EXPECT_EQ(qc["bits"], bits);
    EXPECT_EQ(qc["group_size"], -1);
    EXPECT_EQ(qc["meta"]["sllm_method"], "rtn");
    fs::remove_all(dir);
  }
}

TEST(IntqLayout, AwqRoundTrip) {
  auto base = fixtures::tiny_model(fixtures::tiny_config(4, /*bias=*/true));
  Spec s;
  s.method = "awq";
  auto m = quantized(*base, s, 9);
  const auto dir = temp_dir("awq");
  round_trip(m, dir);
  auto f = io::SafetensorsFile::open(file(dir));
  expect_tensor(f, kK + ".qweight", io::DType::i32, {64, 64 / 8});
  expect_tensor(f, kK + ".qzeros", io::DType::i32, {2, 64 / 8});
  expect_tensor(f, kK + ".scales", io::DType::f16, {2, 64});
  expect_tensor(f, kK + ".bias", io::DType::f16, {64});
  EXPECT_EQ(f.find(kK + ".g_idx"), nullptr);
  // qweight[i, 0]: output columns 0..7 of input row i in the nibble order 0 2 4 6 1 3 5 7.
  const auto q = m->layers()[1].qkv.intq_part(1);
  const auto* qw = f.find(kK + ".qweight");
  for (int64_t i : {0, 9, 63}) {
    uint32_t want = 0;
    const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    for (int p = 0; p < 8; ++p) want |= uint32_t(q.q[order[p] * 64 + i]) << (4 * p);
    uint32_t got;
    std::memcpy(&got, qw->data + i * 8 * 4, 4);
    EXPECT_EQ(got, want) << i;
  }
  auto qc = read_json((fs::path(dir) / "config.json").string())["quantization_config"];
  EXPECT_EQ(qc, nlohmann::json({{"quant_method", "awq"},
                                {"zero_point", true},
                                {"group_size", 32},
                                {"bits", 4},
                                {"version", "gemm"},
                                {"modules_to_not_convert", nullptr}}));
  fs::remove_all(dir);
}

TEST(IntqLayout, Int8RoundTrip) {
  auto base = fixtures::tiny_model(fixtures::tiny_config(2, /*bias=*/true));
  Spec s;
  s.method = "int8";
  s.threshold = 4.5;
  auto m = quantized(*base, s, 3);
  const auto dir = temp_dir("int8");
  round_trip(m, dir);
  auto f = io::SafetensorsFile::open(file(dir));
  expect_tensor(f, kK + ".weight", io::DType::i8, {32, 64});
  expect_tensor(f, kK + ".SCB", io::DType::f32, {32});
  expect_tensor(f, kK + ".weight_format", io::DType::u8, {});
  expect_tensor(f, kK + ".bias", io::DType::f32, {32});  // bnb keeps the bias dense
  EXPECT_EQ(f.find(kK + ".weight_format")->data[0], 0);
  auto qc = read_json((fs::path(dir) / "config.json").string())["quantization_config"];
  EXPECT_EQ(qc["quant_method"], "bitsandbytes");
  EXPECT_EQ(qc["load_in_8bit"], true);
  EXPECT_EQ(qc["_load_in_8bit"], true);
  EXPECT_EQ(qc["load_in_4bit"], false);
  EXPECT_EQ(qc["llm_int8_threshold"], 4.5);
  EXPECT_EQ(qc["llm_int8_has_fp16_weight"], false);
  EXPECT_TRUE(qc["llm_int8_skip_modules"].is_null());
  EXPECT_EQ(qc.size(), 13u);
  fs::remove_all(dir);
}

TEST(IntqLayout, MixedMethodsAndSettingsCannotBeSaved) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  auto g = quantized(*base, {});
  Spec a;
  a.method = "awq";
  auto w = quantized(*base, a);
  auto mixed =
      std::make_shared<model::LlamaModel>(g->map_linears([&](int64_t i, const model::Linear& l) {
        return l.parts[0].name == "mlp.down_proj" ? w->layers()[i].down : l;
      }));
  try {
    load::save_hf_dir(loaded(mixed), temp_dir("mixed"), at::kFloat);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mixes quantization formats (AWQ, GPTQ)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(temp_dir("mixed")));
  // Some modules dense: GPTQ names the quantized ones per block.
  auto part =
      std::make_shared<model::LlamaModel>(g->map_linears([&](int64_t i, const model::Linear& l) {
        return l.parts[0].name == "mlp.down_proj" ? base->layers()[i].down : l;
      }));
  const auto dir = temp_dir("partial");
  round_trip(part, dir);
  auto qc = read_json((fs::path(dir) / "config.json").string())["quantization_config"];
  EXPECT_EQ(qc["modules_in_block_to_quantize"],
            nlohmann::json::array({{"mlp.gate_proj", "mlp.up_proj", "self_attn.k_proj",
                                    "self_attn.o_proj", "self_attn.q_proj", "self_attn.v_proj"}}));
  fs::remove_all(dir);
}

TEST(IntqLayout, BrokenTensorsAndConfigsAreClearErrors) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  Spec s;
  s.sym = true;
  auto m = quantized(*base, s);
  const auto dir = temp_dir("broken");
  load::save_hf_dir(loaded(m), dir, at::kFloat);
  const auto path = file(dir);
  const auto clean = io::read_file(path);
  const auto cfg_path = (fs::path(dir) / "config.json").string();
  const auto cfg = read_json(cfg_path);
  auto restore = [&] {
    io::write_file_atomic(path, clean);
    io::write_file_atomic(cfg_path, cfg.dump(2));
  };
  auto check = [&](const std::string& what, const std::function<void(Tensors&)>& fn,
                   const std::vector<std::string>& parts) {
    SCOPED_TRACE(what);
    restore();
    edit_tensors(dir, fn);
    expect_load_error(dir, parts);
  };
  check("short qweight",
        [](Tensors& t) {
          tensor(t, kK + ".qweight") = at::zeros({7, 32}, at::kInt);
        },
        {path, kK + ".qweight", "[7, 32]", "[8, 32]", "GPTQ module"});
  check("qzeros as int64",
        [](Tensors& t) { tensor(t, kK + ".qzeros") = tensor(t, kK + ".qzeros").to(at::kLong); },
        {kK + ".qzeros", "I64", "I32"});
  check("missing scales", [](Tensors& t) { erase(t, kK + ".scales"); },
        {kK + ".scales", "missing"});
  check("fp32 scales",
        [](Tensors& t) {
          tensor(t, kK + ".scales") = at::ones({2, 32});
        },
        {kK + ".scales", "F32", "F16"});
  check("inf scale", [](Tensors& t) { tensor(t, kK + ".scales")[1][3] = INFINITY; },
        {kK + ".scales", "non-finite"});
  check("g_idx out of range", [](Tensors& t) { tensor(t, kK + ".g_idx")[5] = 2; },
        {kK + ".g_idx", "group 2 at input column 5"});
  check("g_idx with unequal groups", [](Tensors& t) { tensor(t, kK + ".g_idx")[5] = 1; },
        {kK + ".g_idx", "31 input columns in group 0"});
  check("zeros not symmetric", [](Tensors& t) { tensor(t, kK + ".qzeros")[0][0] = 0x77777776; },
        {kK + ".qzeros", "zero point 7", "sym: true"});
  check("q_proj GPTQ, k_proj dense",
        [](Tensors& t) {
          for (const char* sfx : {".qweight", ".qzeros", ".scales", ".g_idx"}) erase(t, kK + sfx);
          t.emplace_back(kK + ".weight", at::zeros({32, 64}));
        },
        {"partly as GPTQ/AWQ (qweight) and partly dense"});
  check("non-zero stray bias",
        [](Tensors& t) { t.emplace_back(kDown + ".bias", at::ones({64}, at::kHalf)); },
        {kDown, "non-zero bias"});
  // An all-zero bias (old exporters wrote one for every module) is accepted.
  restore();
  edit_tensors(dir,
               [](Tensors& t) { t.emplace_back(kDown + ".bias", at::zeros({64}, at::kHalf)); });
  EXPECT_NO_THROW(load::load_model(dir));

  auto with_qc = [&](const nlohmann::json& qc, const std::vector<std::string>& parts) {
    SCOPED_TRACE(qc.dump());
    restore();
    auto c = cfg;
    c["quantization_config"] = qc;
    io::write_file_atomic(cfg_path, c.dump(2));
    expect_load_error(dir, parts);
  };
  auto qc = cfg["quantization_config"];
  auto edited = [&](const char* k, const nlohmann::json& v) {
    auto c = qc;
    c[k] = v;
    return c;
  };
  const std::string kQ0 = "model.layers.0.self_attn.q_proj";  // [64, 64], read first
  with_qc(edited("bits", 8), {kQ0 + ".qweight", "[8, 64]", "[16, 64]", "bits 8"});
  with_qc(edited("bits", 3), {cfg_path, "3-bit"});
  with_qc(edited("group_size", 16), {kQ0 + ".qzeros", "[2, 8]", "[4, 8]"});
  with_qc(edited("checkpoint_format", "marlin"), {cfg_path, "'marlin'", "not supported"});
  with_qc(edited("group_size", "128"), {cfg_path, "no integer \"group_size\""});
  with_qc(edited("quant_method", "awq"), {kQ0 + ".qweight", "[64, 8]", "AWQ module"});
  with_qc(nlohmann::json(
              {{"quant_method", "awq"}, {"bits", 4}, {"group_size", 32}, {"version", "gemv"}}),
          {cfg_path, "'gemv'", "GEMM"});
  with_qc(nlohmann::json({{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}}),
          {kQ0, "GPTQ/AWQ tensors (qweight)", "'bitsandbytes' (4-bit)"});
  with_qc(nlohmann::json({{"quant_method", "hqq"}}), {cfg_path, "'hqq'", "not supported"});
  // No quantization_config at all: qweight cannot be read.
  restore();
  auto c = cfg;
  c.erase("quantization_config");
  io::write_file_atomic(cfg_path, c.dump(2));
  expect_load_error(dir, {"no quantization_config", "qweight"});
  // ... unless AutoGPTQ's quantize_config.json says it (quant_method may be absent there).
  auto sep = qc;
  sep.erase("quant_method");
  io::write_file_atomic((fs::path(dir) / "quantize_config.json").string(), sep.dump());
  expect_same_weights(*m, *load::load_model(dir).model);
  fs::remove((fs::path(dir) / "quantize_config.json"));

  // gptq_v2 stores the zeros without the off-by-one.
  restore();
  edit_tensors(dir, [](Tensors& t) {
    for (auto& [n, v] : t)
      if (n.size() > 7 && n.compare(n.size() - 7, 7, ".qzeros") == 0) v = v + 0x11111111;
  });
  auto v2 = cfg;
  v2["quantization_config"]["checkpoint_format"] = "gptq_v2";
  io::write_file_atomic(cfg_path, v2.dump(2));
  expect_same_weights(*m, *load::load_model(dir).model);
  fs::remove_all(dir);
}

TEST(IntqLayout, BrokenInt8IsAClearError) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  Spec s;
  s.method = "int8";
  auto m = quantized(*base, s);
  const auto dir = temp_dir("int8broken");
  load::save_hf_dir(loaded(m), dir, at::kFloat);
  const auto path = file(dir);
  const auto clean = io::read_file(path);
  auto check = [&](const std::string& what, const std::function<void(Tensors&)>& fn,
                   const std::vector<std::string>& parts) {
    SCOPED_TRACE(what);
    io::write_file_atomic(path, clean);
    edit_tensors(dir, fn);
    expect_load_error(dir, parts);
  };
  check("missing SCB", [](Tensors& t) { erase(t, kK + ".SCB"); }, {kK + ".weight", "SCB"});
  check("negative SCB", [](Tensors& t) { tensor(t, kK + ".SCB")[3] = -1.0f; },
        {kK + ".SCB", "row absmax -1 at row 3"});
  check("col32 weight_format", [](Tensors& t) { tensor(t, kK + ".weight_format").fill_(1); },
        {kK + ".weight_format", "weight_format 0"});
  check("fp16 weight",
        [](Tensors& t) {
          tensor(t, kK + ".weight") = at::zeros({32, 64}, at::kHalf);
        },
        {kK + ".weight", "F16", "I8"});
  // Without a config (or with bitsandbytes 4-bit's) the tensors decide, with the default
  // threshold; a GPTQ config does not match them.
  io::write_file_atomic(path, clean);
  const auto cfg_path = (fs::path(dir) / "config.json").string();
  auto c = read_json(cfg_path);
  c["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 32}};
  io::write_file_atomic(cfg_path, c.dump(2));
  expect_load_error(dir, {"8-bit layout", "'gptq'"});
  c.erase("quantization_config");
  io::write_file_atomic(cfg_path, c.dump(2));
  auto back = load::load_model(dir);
  EXPECT_EQ(back.model->layers()[0].qkv.get<model::Int8Format>().t.threshold, 6.0);
  expect_same_weights(*m, *back.model);
  fs::remove_all(dir);
}
