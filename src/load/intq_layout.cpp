// GPTQ v1, AWQ GEMM and bitsandbytes int8 checkpoint layouts. See intq_layout.h and
// docs/quant_formats.md.
#include "load/intq_layout.h"

#include <ATen/ATen.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/error.h"
#include "load/tensor_io.h"
#include "quant/intq_pack.h"

namespace sllm::load::intq {
namespace {

std::string lower(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// Group size and count of a module. GPTQ's g_idx = i / group_size allows a partial last group
// (SmolLM2's 576 inputs in groups of 128); AWQ's GEMM layout needs whole groups.
struct Groups {
  int64_t size = 0, count = 0;
};

Groups groups_of(const ModuleTensors& r, const std::string& tensor, const IntQConfig& c,
                 int64_t in) {
  Groups g;
  g.size = c.group_size == -1 ? in : c.group_size;
  if (g.size <= 0 || (c.method == "awq" && in % g.size != 0))
    r.fail(tensor, fmt::format("belongs to a module with in_features {} that group_size {} (from "
                               "{}) does not divide; the AWQ GEMM layout needs whole groups",
                               in, c.group_size, c.source));
  g.count = (in + g.size - 1) / g.size;
  return g;
}

std::vector<float> read_scales(const ModuleTensors& r, const std::string& name, int64_t out,
                               int64_t groups) {
  const auto& v = r.need(name, io::DType::f16, {{groups, out}}, fmt::format("[groups, out]"));
  auto bits = r.values<uint16_t>(v);
  auto s = quant::unpack_scales_fp16(bits.data(), out, groups);
  for (size_t k = 0; k < s.size(); ++k)
    if (!std::isfinite(s[k]))
      r.fail(name, fmt::format("has a non-finite scale {} at [group {}, column {}]", s[k],
                               static_cast<int64_t>(k) % groups, static_cast<int64_t>(k) / groups));
  return s;
}

void check_module(const quant::IntQWeight& q, const std::string& module) {
  const int64_t groups = q.groups();
  SLLM_CHECK(q.out > 0 && q.in > 0 && q.group_size > 0 &&
                 q.q.size() == static_cast<size_t>(q.out * q.in) &&
                 q.scales.size() == static_cast<size_t>(q.out * groups) &&
                 q.zeros.size() == static_cast<size_t>(q.out * groups) &&
                 (q.g_idx.empty() || q.g_idx.size() == static_cast<size_t>(q.in)),
             "{}: inconsistent quantized weight ([{}, {}], group size {}, {} values, {} scales, "
             "{} zeros, {} g_idx)",
             module, q.out, q.in, q.group_size, q.q.size(), q.scales.size(), q.zeros.size(),
             q.g_idx.size());
}

at::Tensor fp16_bias(const at::Tensor& bias, int64_t out, const std::string& module) {
  SLLM_CHECK(bias.dim() == 1 && bias.size(0) == out, "{}: bias of shape {} for {} outputs", module,
             shape_str(bias.sizes().vec()), out);
  return bias.detach().to(at::kCPU, at::kHalf).contiguous();
}

bool flag(const nlohmann::json& qc, const char* a, const char* b = nullptr) {
  auto get = [&](const char* k) {
    return k && qc.contains(k) && qc[k].is_boolean() && qc[k].get<bool>();
  };
  return get(a) || get(b);
}

}  // namespace

// ---- saving ----

NamedTensors gptq_module_tensors(const std::string& module, const quant::IntQWeight& q,
                                 const at::Tensor& bias) {
  check_module(q, module);
  const int64_t out = q.out, in = q.in, groups = q.groups(), per = 32 / q.bits;
  try {
    NamedTensors t;
    t.emplace_back(module + ".qweight",
                   tensor_of(quant::gptq_pack_qweight(q.q.data(), out, in, q.bits), {in / per, out},
                             at::kInt));
    t.emplace_back(module + ".qzeros",
                   tensor_of(quant::gptq_pack_qzeros(q.zeros.data(), out, groups, q.bits),
                             {groups, out / per}, at::kInt));
    t.emplace_back(
        module + ".scales",
        tensor_of(quant::pack_scales_fp16(q.scales.data(), out, groups), {groups, out}, at::kHalf));
    std::vector<int32_t> g_idx(q.g_idx);
    if (g_idx.empty())
      for (int64_t i = 0; i < in; ++i) g_idx.push_back(static_cast<int32_t>(i / q.group_size));
    t.emplace_back(module + ".g_idx", tensor_of(g_idx, {in}, at::kInt));
    if (bias.defined()) t.emplace_back(module + ".bias", fp16_bias(bias, out, module));
    return t;
  } catch (const Error& e) {
    SLLM_FAIL("{}: cannot be written in the GPTQ layout: {}", module, e.what());
  }
}

NamedTensors awq_module_tensors(const std::string& module, const quant::IntQWeight& q,
                                const at::Tensor& bias) {
  check_module(q, module);
  SLLM_CHECK(q.bits == 4, "{}: the AWQ GEMM layout stores 4-bit weights, this one has {} bits",
             module, q.bits);
  SLLM_CHECK(q.g_idx.empty(),
             "{}: the AWQ layout has no g_idx; an act-order weight must be saved as GPTQ", module);
  const int64_t out = q.out, in = q.in, groups = q.groups();
  try {
    NamedTensors t;
    t.emplace_back(module + ".qweight", tensor_of(quant::awq_pack_qweight(q.q.data(), out, in),
                                                  {in, out / 8}, at::kInt));
    t.emplace_back(module + ".qzeros",
                   tensor_of(quant::awq_pack_qzeros(q.zeros.data(), out, groups), {groups, out / 8},
                             at::kInt));
    t.emplace_back(
        module + ".scales",
        tensor_of(quant::pack_scales_fp16(q.scales.data(), out, groups), {groups, out}, at::kHalf));
    if (bias.defined()) t.emplace_back(module + ".bias", fp16_bias(bias, out, module));
    return t;
  } catch (const Error& e) {
    SLLM_FAIL("{}: cannot be written in the AWQ GEMM layout: {}", module, e.what());
  }
}

NamedTensors int8_module_tensors(const std::string& module, const quant::Int8Weight& q) {
  SLLM_CHECK(q.out > 0 && q.in > 0 && q.q.size() == static_cast<size_t>(q.out * q.in) &&
                 q.scb.size() == static_cast<size_t>(q.out),
             "{}: inconsistent int8 weight ([{}, {}], {} values, {} SCB)", module, q.out, q.in,
             q.q.size(), q.scb.size());
  NamedTensors t;
  t.emplace_back(module + ".weight", tensor_of(q.q, {q.out, q.in}, at::kChar));
  t.emplace_back(module + ".SCB", tensor_of(q.scb, {q.out}, at::kFloat));
  // bitsandbytes records the (only remaining) row-major layout as a 0-d uint8 0.
  t.emplace_back(module + ".weight_format", at::zeros({}, at::kByte));
  return t;
}

nlohmann::json gptq_config(int bits, int64_t group_size, bool sym, bool desc_act,
                           const std::string& made_by,
                           const std::vector<std::string>& quantized_in_block) {
  nlohmann::json j = {{"bits", bits},
                      {"group_size", group_size},
                      {"damp_percent", 0.01},
                      {"desc_act", desc_act},
                      {"static_groups", false},
                      {"sym", sym},
                      {"true_sequential", true},
                      {"model_name_or_path", nullptr},
                      {"model_file_base_name", "model"},
                      {"quant_method", "gptq"},
                      {"checkpoint_format", "gptq"},
                      {"meta", {{"quantizer", {"sllm:0.1.0"}}, {"sllm_method", made_by}}}};
  if (!quantized_in_block.empty())
    j["modules_in_block_to_quantize"] = nlohmann::json::array({quantized_in_block});
  return j;
}

nlohmann::json awq_config(int64_t group_size, const std::vector<std::string>& dense_modules) {
  return {{"quant_method", "awq"},
          {"zero_point", true},
          {"group_size", group_size},
          {"bits", 4},
          {"version", "gemm"},
          {"modules_to_not_convert",
           dense_modules.empty() ? nlohmann::json(nullptr) : nlohmann::json(dense_modules)}};
}

nlohmann::json int8_config(double threshold, const std::vector<std::string>& dense_modules) {
  nlohmann::json skip = nullptr;  // transformers' default: lm_head (and tied outputs) only
  if (!dense_modules.empty()) {
    skip = dense_modules;
    skip.push_back("lm_head");
  }
  // Every key BitsAndBytesConfig(load_in_8bit=True).to_dict() writes (transformers 5.23); the
  // 4-bit keys keep their defaults.
  return {{"_load_in_4bit", false},
          {"_load_in_8bit", true},
          {"bnb_4bit_compute_dtype", "float32"},
          {"bnb_4bit_quant_storage", "uint8"},
          {"bnb_4bit_quant_type", "fp4"},
          {"bnb_4bit_use_double_quant", false},
          {"llm_int8_enable_fp32_cpu_offload", false},
          {"llm_int8_has_fp16_weight", false},
          {"llm_int8_skip_modules", skip},
          {"llm_int8_threshold", threshold},
          {"load_in_4bit", false},
          {"load_in_8bit", true},
          {"quant_method", "bitsandbytes"}};
}

// ---- loading ----

IntQConfig parse_config(const nlohmann::json& qc, const std::string& source) {
  SLLM_CHECK(qc.is_object(), "{}: quantization_config must be an object", source);
  auto str = [&](const char* k) -> std::string {
    if (!qc.contains(k) || qc[k].is_null()) return "";
    SLLM_CHECK(qc[k].is_string(), "{}: quantization_config.{} must be a string, got {}", source, k,
               qc[k].dump());
    return lower(qc[k].get<std::string>());
  };
  auto integer = [&](const char* k, const char* alt) -> int64_t {
    const char* key = qc.contains(k) ? k : (alt && qc.contains(alt) ? alt : nullptr);
    SLLM_CHECK(key && qc[key].is_number_integer(),
               "{}: quantization_config '{}' has no integer \"{}\" (not supported: sllm does "
               "not guess it)",
               source, str("quant_method"), k);
    return qc[key].get<int64_t>();
  };
  auto boolean = [&](const char* k, bool dflt) {
    if (!qc.contains(k) || qc[k].is_null()) return dflt;
    SLLM_CHECK(qc[k].is_boolean(), "{}: quantization_config.{} must be true or false, got {}",
               source, k, qc[k].dump());
    return qc[k].get<bool>();
  };
  IntQConfig c;
  c.source = source;
  const std::string method = str("quant_method");
  if (method == "bitsandbytes") {
    SLLM_CHECK(
        flag(qc, "load_in_8bit", "_load_in_8bit") && !flag(qc, "load_in_4bit", "_load_in_4bit"),
        "{}: quantization_config (bitsandbytes) is not an 8-bit one (load_in_8bit: true)", source);
    SLLM_CHECK(!flag(qc, "llm_int8_has_fp16_weight"),
               "{}: llm_int8_has_fp16_weight: true (weights kept in fp16 for training) is not "
               "supported; sllm reads int8 weights with SCB",
               source);
    c.method = "int8";
    c.bits = 8;
    if (qc.contains("llm_int8_threshold") && !qc["llm_int8_threshold"].is_null()) {
      const auto& t = qc["llm_int8_threshold"];
      SLLM_CHECK(t.is_number() && t.get<double>() >= 0 && std::isfinite(t.get<double>()),
                 "{}: llm_int8_threshold {} is not a number >= 0", source, t.dump());
      c.threshold = t.get<double>();
    }
    return c;
  }
  if (method == "gptq") {
    c.method = "gptq";
    c.bits = static_cast<int>(integer("bits", "wbits"));
    SLLM_CHECK(c.bits != 3,
               "{}: 3-bit GPTQ checkpoints are not supported (sllm reads 2, 4 and 8 bits)", source);
    SLLM_CHECK(c.bits == 2 || c.bits == 4 || c.bits == 8,
               "{}: GPTQ bits {} is not supported (sllm reads 2, 4 and 8 bits)", source, c.bits);
    c.group_size = integer("group_size", "q_group_size");
    SLLM_CHECK(c.group_size == -1 || c.group_size > 0,
               "{}: group_size {} must be -1 (per channel) or positive", source, c.group_size);
    c.sym = boolean("sym", true);  // AutoGPTQ's default when the key is absent
    c.desc_act = boolean("desc_act", false);
    SLLM_CHECK(!boolean("is_marlin_format", false),
               "{}: Marlin-format GPTQ checkpoints (is_marlin_format) are not supported; sllm "
               "reads checkpoint_format gptq (v1) and gptq_v2",
               source);
    SLLM_CHECK(!boolean("lm_head", false),
               "{}: the checkpoint quantizes lm_head with GPTQ (lm_head: true); sllm reads a "
               "quantized lm_head only as int8 + SCB (sllm quantize --lm-head int8)",
               source);
    std::string fmt_name = str("checkpoint_format");
    if (fmt_name.empty()) fmt_name = str("format");
    if (fmt_name.empty()) fmt_name = "gptq";
    SLLM_CHECK(fmt_name == "gptq" || fmt_name == "gptq_v2",
               "{}: GPTQ checkpoint_format '{}' is not supported; sllm reads gptq (v1) and "
               "gptq_v2",
               source, fmt_name);
    c.gptq_v1 = fmt_name == "gptq";
    const std::string pack = str("pack_dtype");
    SLLM_CHECK(pack.empty() || pack == "int32" || pack == "torch.int32",
               "{}: pack_dtype '{}' is not supported (GPTQ packs into int32)", source, pack);
    if (qc.contains("meta") && qc["meta"].is_object() && qc["meta"].contains("sllm_method") &&
        qc["meta"]["sllm_method"] == "rtn")
      c.made_by = "rtn";
    return c;
  }
  if (method == "awq") {
    c.method = "awq";
    c.bits = static_cast<int>(integer("bits", "w_bit"));
    SLLM_CHECK(c.bits == 4, "{}: AWQ bits {} is not supported (the GEMM layout is 4-bit)", source,
               c.bits);
    c.group_size = integer("group_size", "q_group_size");
    SLLM_CHECK(c.group_size == -1 || c.group_size > 0,
               "{}: group_size {} must be -1 (per channel) or positive", source, c.group_size);
    std::string version = str("version");
    if (version.empty()) version = str("format");
    if (version.empty()) version = "gemm";
    SLLM_CHECK(version == "gemm",
               "{}: AWQ version '{}' is not supported; sllm reads the GEMM layout (version "
               "\"gemm\")",
               source, version);
    c.sym = false;
    return c;
  }
  SLLM_FAIL(
      "{}: quantization_config.quant_method '{}' is not supported: sllm loads bitsandbytes "
      "(4-bit nf4/fp4, 8-bit LLM.int8), GPTQ (v1, v2) and AWQ (GEMM) checkpoints",
      source, method);
}

bool has_qweight(const io::SafetensorsSet& set, const std::string& module) {
  return set.find(module + ".qweight") != nullptr;
}

bool is_int8(const io::SafetensorsSet& set, const std::string& module) {
  if (set.find(module + ".SCB") != nullptr) return true;
  const auto* v = set.find(module + ".weight");
  SLLM_CHECK(v == nullptr || v->dtype != io::DType::i8,
             "{}: tensor '{}.weight' is int8 (an LLM.int8 weight?) but '{}.SCB' is missing",
             file_of(set, module + ".weight"), module, module);
  return false;
}

quant::IntQWeight read_gptq(const io::SafetensorsSet& set, const std::string& module,
                            const std::vector<int64_t>& shape, const IntQConfig& c) {
  ModuleTensors r{set, module, "GPTQ"};
  const int64_t out = shape.at(0), in = shape.at(1), per = 32 / c.bits;
  const std::string qw = module + ".qweight", qz = module + ".qzeros", sc = module + ".scales",
                    gi = module + ".g_idx";
  if (in % per != 0)
    r.fail(qw, fmt::format("belongs to a module with in_features {}, not a multiple of the {} "
                           "values per int32 of {}-bit packing",
                           in, per, c.bits));
  if (out % per != 0)
    r.fail(qz, fmt::format("belongs to a module with out_features {}, not a multiple of the {} "
                           "values per int32 of {}-bit packing",
                           out, per, c.bits));
  const auto g = groups_of(r, sc, c, in);
  const auto& vw = r.need(qw, io::DType::i32, {{in / per, out}},
                          fmt::format("in_features * {} bits / 32, out_features; {} says bits {}",
                                      c.bits, c.source, c.bits));
  const auto& vz = r.need(qz, io::DType::i32, {{g.count, out / per}},
                          fmt::format("groups, out_features * {} bits / 32; group_size {} in {}",
                                      c.bits, c.group_size, c.source));
  quant::IntQWeight q;
  q.bits = c.bits;
  q.group_size = g.size;
  q.out = out;
  q.in = in;
  q.sym = c.sym;
  q.q = quant::gptq_unpack_qweight(r.values<int32_t>(vw).data(), out, in, c.bits);
  q.zeros =
      quant::gptq_unpack_qzeros(r.values<int32_t>(vz).data(), out, g.count, c.bits, c.gptq_v1);
  q.scales = read_scales(r, sc, out, g.count);
  if (c.sym) {
    const float mid = static_cast<float>(1 << (c.bits - 1));
    for (size_t k = 0; k < q.zeros.size(); ++k)
      if (q.zeros[k] != mid)
        r.fail(qz, fmt::format("holds zero point {} (column {}, group {}), but {} says sym: true "
                               "(every zero {})",
                               q.zeros[k], static_cast<int64_t>(k) / g.count,
                               static_cast<int64_t>(k) % g.count, c.source, mid));
  }
  if (set.find(gi) != nullptr) {  // GPTQ-for-LLaMa era files may lack it: then i / group_size
    auto idx = r.values<int32_t>(r.need(gi, io::DType::i32, {{in}}));
    std::vector<int64_t> count(static_cast<size_t>(g.count), 0);
    bool trivial = true;
    for (int64_t i = 0; i < in; ++i) {
      if (idx[i] < 0 || idx[i] >= g.count)
        r.fail(gi, fmt::format("has group {} at input column {}, outside 0..{}", idx[i], i,
                               g.count - 1));
      ++count[idx[i]];
      trivial = trivial && idx[i] == i / g.size;
    }
    for (int64_t k = 0; k < g.count; ++k)
      if (count[k] != std::min(g.size, in - k * g.size))
        r.fail(gi, fmt::format("puts {} input columns in group {}; sllm needs every group to "
                               "hold group_size {} columns (the last one what is left)",
                               count[k], k, g.size));
    if (!trivial) q.g_idx = std::move(idx);
  }
  return q;
}

quant::IntQWeight read_awq(const io::SafetensorsSet& set, const std::string& module,
                           const std::vector<int64_t>& shape, const IntQConfig& c) {
  ModuleTensors r{set, module, "AWQ"};
  const int64_t out = shape.at(0), in = shape.at(1);
  const std::string qw = module + ".qweight", qz = module + ".qzeros", sc = module + ".scales";
  if (out % 8 != 0)
    r.fail(qw, fmt::format("belongs to a module with out_features {}, not a multiple of the 8 "
                           "values per int32 of AWQ packing",
                           out));
  const auto g = groups_of(r, sc, c, in);
  const auto& vw = r.need(qw, io::DType::i32, {{in, out / 8}}, "in_features, out_features / 8");
  const auto& vz =
      r.need(qz, io::DType::i32, {{g.count, out / 8}},
             fmt::format("groups, out_features / 8; group_size {} in {}", c.group_size, c.source));
  quant::IntQWeight q;
  q.bits = 4;
  q.group_size = g.size;
  q.out = out;
  q.in = in;
  q.q = quant::awq_unpack_qweight(r.values<int32_t>(vw).data(), out, in);
  q.zeros = quant::awq_unpack_qzeros(r.values<int32_t>(vz).data(), out, g.count);
  q.scales = read_scales(r, sc, out, g.count);
  q.sym = std::all_of(q.zeros.begin(), q.zeros.end(), [](float z) { return z == 8.0f; });
  return q;
}

quant::Int8Weight read_int8(const io::SafetensorsSet& set, const std::string& module,
                            const std::vector<int64_t>& shape) {
  ModuleTensors r{set, module, "LLM.int8"};
  const int64_t out = shape.at(0), in = shape.at(1);
  const std::string w = module + ".weight", scb = module + ".SCB", wf = module + ".weight_format";
  quant::Int8Weight q;
  q.out = out;
  q.in = in;
  q.q = r.values<int8_t>(r.need(w, io::DType::i8, {{out, in}}, "out_features, in_features"));
  q.scb = r.values<float>(r.need(scb, io::DType::f32, {{out}}, "one absmax per output row"));
  for (int64_t o = 0; o < out; ++o)
    if (!std::isfinite(q.scb[o]) || q.scb[o] < 0)
      r.fail(scb, fmt::format("has an invalid row absmax {} at row {}", q.scb[o], o));
  if (set.find(wf) != nullptr) {
    const auto f = r.values<uint8_t>(r.need(wf, io::DType::u8, {{}, {1}}));
    if (f[0] != 0)
      r.fail(wf, fmt::format("is {}, a GPU tile layout of old bitsandbytes versions; sllm reads "
                             "row-major int8 weights (weight_format 0)",
                             f[0]));
  }
  return q;
}

}  // namespace sllm::load::intq
