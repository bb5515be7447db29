// transformers / bitsandbytes 4-bit checkpoint layout. See bnb_layout.h and docs/nf4.md.
#include "load/bnb_layout.h"

#include <ATen/ATen.h>

#include <fmt/ranges.h>

#include <cmath>
#include <map>
#include <set>

#include "core/error.h"
#include "load/tensor_io.h"
#include "model/llama.h"

namespace sllm::load::bnb {
namespace {

at::Tensor bytes_tensor(const void* data, int64_t n) {
  return tensor_from_bytes(data, static_cast<size_t>(n), {n}, at::kByte);
}

at::Tensor floats_tensor(const std::vector<float>& v) {
  return tensor_of(v, {static_cast<int64_t>(v.size())}, at::kFloat);
}

int64_t packed_bytes(int64_t numel) { return (numel + 1) / 2; }

bool is_pow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

// One module's tensors as read from the set, with the 4-bit layout's value checks.
struct ModuleReader : ModuleTensors {
  ModuleReader(const io::SafetensorsSet& s, std::string m)
      : ModuleTensors{s, std::move(m), "4-bit bitsandbytes"} {}

  // A tensor of dtype d and exactly n elements, laid out as one of the accepted shapes.
  const io::TensorView& need(const std::string& name, io::DType d, int64_t n,
                             const std::vector<std::vector<int64_t>>& shapes) const {
    return ModuleTensors::need(name, d, shapes, fmt::format("{} elements", n));
  }
  using ModuleTensors::need;

  std::vector<float> floats(const std::string& name, int64_t n, bool nonneg = false) const {
    auto out = values<float>(need(name, io::DType::f32, n, {{n}}));
    for (size_t i = 0; i < out.size(); ++i) {
      if (!std::isfinite(out[i]) || (nonneg && out[i] < 0))
        fail(name, fmt::format("has an invalid value {} at index {}", out[i], i));
    }
    return out;
  }

  std::vector<uint8_t> bytes(const std::string& name, int64_t n,
                             const std::vector<std::vector<int64_t>>& shapes) const {
    return values<uint8_t>(need(name, io::DType::u8, n, shapes));
  }
};

}  // namespace

std::string dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return "float32";
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    default:
      SLLM_FAIL("4-bit checkpoints record float32, bfloat16 or float16 weights, not {}",
                c10::toString(dtype));
  }
}

// ---- saving ----

std::vector<std::pair<std::string, at::Tensor>> module_tensors(const std::string& module,
                                                               const quant::Nf4Weight& q,
                                                               const at::Tensor& packed) {
  const int64_t n = packed_bytes(q.numel());
  SLLM_CHECK(packed.defined() && packed.scalar_type() == at::kByte && packed.numel() == n,
             "{}: 4-bit weight of shape {} needs {} packed bytes, got {}", module,
             shape_str(q.shape), n, packed.defined() ? packed.numel() : 0);
  const std::string w = module + ".weight";
  std::vector<std::pair<std::string, at::Tensor>> out;
  // bitsandbytes stores the packed uint8 codes as a [bytes, 1] column (Params4bit's data).
  out.emplace_back(w, packed.to(at::kCPU).contiguous().reshape({n, 1}).clone());
  if (q.double_quant()) {
    out.emplace_back(w + ".absmax",
                     bytes_tensor(q.absmax_q.data(), static_cast<int64_t>(q.absmax_q.size())));
  } else {
    out.emplace_back(w + ".absmax", floats_tensor(q.absmax));
  }
  // bitsandbytes builds its maps from Python numbers, so FP4's code 8 ("-0") is stored as +0.0;
  // sllm's table has -0.0 there. Same values, but the file must hold bnb's bytes.
  std::vector<float> qmap = q.quant_map;
  for (float& v : qmap)
    if (v == 0.0f) v = 0.0f;
  out.emplace_back(w + ".quant_map", floats_tensor(qmap));
  if (q.double_quant()) {
    out.emplace_back(w + ".nested_absmax", floats_tensor(q.nested_absmax));
    out.emplace_back(w + ".nested_quant_map", floats_tensor(q.nested_quant_map));
  }
  const std::string js = quant::quant_state_json(q);
  out.emplace_back(w + "." + kQuantStatePrefix + q.quant_type,
                   bytes_tensor(js.data(), static_cast<int64_t>(js.size())));
  return out;
}

std::vector<std::pair<std::string, std::vector<std::pair<std::string, at::Tensor>>>> linear_tensors(
    int64_t layer, const model::Linear& l, at::ScalarType dtype) {
  const auto* f = l.get_if<model::Nf4Format>();
  SLLM_CHECK(f != nullptr, "layer {}: a {} Linear is not 4-bit", layer, l.format_name());
  SLLM_CHECK(f->states.size() == l.parts.size(),
             "layer {}: 4-bit Linear has {} parts but {} quant states", layer, l.parts.size(),
             f->states.size());
  const std::string dname = dtype_name(dtype);
  const auto packed = f->t.packed.to(at::kCPU).contiguous();
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, at::Tensor>>>> out;
  int64_t off = 0;
  for (size_t j = 0; j < l.parts.size(); ++j) {
    quant::Nf4Weight q = *f->states[j];  // weight bytes live in packed (empty vector here)
    q.dtype = dname;
    const int64_t n = packed_bytes(q.numel());
    SLLM_CHECK(off + n <= packed.numel(), "layer {}: {} packed bytes end past the weight", layer,
               l.parts[j].name);
    const std::string module = "model.layers." + std::to_string(layer) + "." + l.parts[j].name;
    out.emplace_back(module + ".weight", module_tensors(module, q, packed.narrow(0, off, n)));
    off += n;
  }
  SLLM_CHECK(off == packed.numel(), "layer {}: 4-bit parts hold {} bytes of {}", layer, off,
             packed.numel());
  return out;
}

nlohmann::json quantization_config(const model::LlamaModel& m, at::ScalarType dtype) {
  std::set<std::string> types;
  std::set<bool> dq;
  std::vector<std::string> dense;  // decoder modules left dense
  for (size_t i = 0; i < m.layers().size(); ++i) {
    const auto& L = m.layers()[i];
    for (const auto& [name, l] : L.linears()) {
      const auto* f = l.get_if<model::Nf4Format>();
      for (size_t j = 0; j < l.parts.size(); ++j) {
        if (f) {
          types.insert(f->states.at(j)->quant_type);
          dq.insert(f->states.at(j)->double_quant());
        } else {
          dense.push_back("model.layers." + std::to_string(i) + "." + l.parts[j].name);
        }
      }
    }
  }
  if (types.empty()) return nullptr;
  SLLM_CHECK(types.size() == 1 && dq.size() == 1,
             "the model mixes 4-bit types or double quantization settings; a bitsandbytes "
             "quantization_config holds one of each");
  nlohmann::json skip = nullptr;  // transformers' default: lm_head (and tied outputs) only
  if (!dense.empty()) {
    dense.push_back("lm_head");
    skip = dense;
  }
  // Every key BitsAndBytesConfig.to_dict() writes (transformers 5.23), in its values.
  return {{"_load_in_4bit", true},
          {"_load_in_8bit", false},
          {"bnb_4bit_compute_dtype", dtype_name(dtype)},
          {"bnb_4bit_quant_storage", "uint8"},
          {"bnb_4bit_quant_type", *types.begin()},
          {"bnb_4bit_use_double_quant", *dq.begin()},
          {"llm_int8_enable_fp32_cpu_offload", false},
          {"llm_int8_has_fp16_weight", false},
          {"llm_int8_skip_modules", skip},
          {"llm_int8_threshold", 6.0},
          {"load_in_4bit", true},
          {"load_in_8bit", false},
          {"quant_method", "bitsandbytes"}};
}

// ---- loading ----

void check_quantization_config(const nlohmann::json& qc, const std::string& cfg_path) {
  SLLM_CHECK(qc.is_object(), "{}: quantization_config must be an object", cfg_path);
  const std::string method = qc.value("quant_method", std::string());
  SLLM_CHECK(method == "bitsandbytes",
             "{}: quantization_config.quant_method '{}' is not supported: sllm loads "
             "bitsandbytes 4-bit (nf4/fp4) checkpoints only",
             cfg_path, method);
  auto flag = [&](const char* a, const char* b) {
    auto get = [&](const char* k) {
      return qc.contains(k) && qc[k].is_boolean() && qc[k].get<bool>();
    };
    return get(a) || get(b);
  };
  SLLM_CHECK(!flag("load_in_8bit", "_load_in_8bit"),
             "{}: 8-bit bitsandbytes checkpoints (LLM.int8, load_in_8bit) are not supported; sllm "
             "loads 4-bit ones (load_in_4bit)",
             cfg_path);
  SLLM_CHECK(flag("load_in_4bit", "_load_in_4bit"),
             "{}: quantization_config (bitsandbytes) does not say load_in_4bit: true; sllm loads "
             "4-bit bitsandbytes checkpoints only",
             cfg_path);
  if (qc.contains("bnb_4bit_quant_storage") && !qc["bnb_4bit_quant_storage"].is_null()) {
    const auto& s = qc["bnb_4bit_quant_storage"];
    SLLM_CHECK(s.is_string() && s.get<std::string>() == "uint8",
               "{}: bnb_4bit_quant_storage {} is not supported (only uint8)", cfg_path, s.dump());
  }
  if (qc.contains("bnb_4bit_quant_type") && !qc["bnb_4bit_quant_type"].is_null()) {
    const auto& t = qc["bnb_4bit_quant_type"];
    SLLM_CHECK(t.is_string() && (t.get<std::string>() == "nf4" || t.get<std::string>() == "fp4"),
               "{}: bnb_4bit_quant_type {} is not nf4 or fp4", cfg_path, t.dump());
  }
}

bool is_4bit(const io::SafetensorsSet& set, const std::string& module) {
  const std::string w = module + ".weight";
  const bool nf = set.find(w + "." + kQuantStatePrefix + "nf4") != nullptr;
  const bool fp = set.find(w + "." + kQuantStatePrefix + "fp4") != nullptr;
  SLLM_CHECK(!(nf && fp), "{}: module '{}' has both quant_state.bitsandbytes__nf4 and __fp4",
             file_of(set, w), module);
  if (nf || fp) return true;
  const auto* v = set.find(w);
  SLLM_CHECK(v == nullptr || v->dtype != io::DType::u8,
             "{}: tensor '{}' is uint8 (a 4-bit bitsandbytes weight?) but '{}.{}nf4' (or fp4) is "
             "missing",
             file_of(set, w), w, w, kQuantStatePrefix);
  return false;
}

quant::Nf4Weight read_module(const io::SafetensorsSet& set, const std::string& module,
                             const std::vector<int64_t>& expected_shape) {
  ModuleReader r(set, module);
  const std::string w = module + ".weight";
  std::string type = "nf4";
  if (set.find(w + "." + kQuantStatePrefix + "nf4") == nullptr) type = "fp4";
  const std::string qs_name = w + "." + kQuantStatePrefix + type;
  const auto& qs = r.need(qs_name);
  if (qs.dtype != io::DType::u8 || qs.shape.size() != 1)
    r.fail(qs_name, fmt::format("has dtype {} and shape {}, expected a 1-D uint8 tensor",
                                io::dtype_name(qs.dtype), shape_str(qs.shape)));

  // The non-tensor quant state (QuantState.as_dict(packed=True) -> JSON).
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(qs.data), qs.nbytes));
  } catch (const nlohmann::json::exception& e) {
    r.fail(qs_name, fmt::format("is not valid JSON ({})", e.what()));
  }
  if (!j.is_object()) r.fail(qs_name, "is not a JSON object");
  auto key = [&](const char* k, bool (nlohmann::json::*is)() const noexcept,
                 const char* what) -> const nlohmann::json& {
    if (!j.contains(k) || !(j[k].*is)())
      r.fail(qs_name, fmt::format("has no {} \"{}\" in its quant state", what, k));
    return j[k];
  };
  quant::Nf4Weight q;
  q.quant_type = key("quant_type", &nlohmann::json::is_string, "string").get<std::string>();
  if (q.quant_type != type) r.fail(qs_name, fmt::format("says quant_type \"{}\"", q.quant_type));
  q.blocksize = key("blocksize", &nlohmann::json::is_number_integer, "integer").get<int64_t>();
  if (!is_pow2(q.blocksize) || q.blocksize < 64 || q.blocksize > 4096)
    r.fail(qs_name,
           fmt::format("has blocksize {}; sllm supports powers of two 64..4096", q.blocksize));
  q.dtype = key("dtype", &nlohmann::json::is_string, "string").get<std::string>();
  if (q.dtype != "float32" && q.dtype != "bfloat16" && q.dtype != "float16")
    r.fail(qs_name,
           fmt::format("has dtype \"{}\" (expected float32, bfloat16 or float16)", q.dtype));
  const auto& shape = key("shape", &nlohmann::json::is_array, "array");
  for (const auto& d : shape) {
    if (!d.is_number_integer() || d.get<int64_t>() <= 0)
      r.fail(qs_name, fmt::format("has an invalid shape {}", shape.dump()));
    q.shape.push_back(d.get<int64_t>());
  }
  if (q.shape != expected_shape)
    r.fail(qs_name, fmt::format("has shape {} in its quant state, but the model needs {}",
                                shape_str(q.shape), shape_str(expected_shape)));
  const bool nested =
      j.contains("nested_offset") || j.contains("nested_blocksize") || j.contains("nested_dtype");
  if (nested) {
    q.nested_blocksize =
        key("nested_blocksize", &nlohmann::json::is_number_integer, "integer").get<int64_t>();
    if (q.nested_blocksize != 256)
      r.fail(qs_name,
             fmt::format("has nested_blocksize {} (bitsandbytes uses 256)", q.nested_blocksize));
    const auto nd = key("nested_dtype", &nlohmann::json::is_string, "string").get<std::string>();
    if (nd != "float32") r.fail(qs_name, fmt::format("has nested_dtype \"{}\"", nd));
    const double off = key("nested_offset", &nlohmann::json::is_number, "number").get<double>();
    if (!std::isfinite(off)) r.fail(qs_name, "has a non-finite nested_offset");
    q.offset = static_cast<float>(off);
  }

  // The tensors, sized by the quant state.
  const int64_t numel = q.numel(), nbytes = packed_bytes(numel), blocks = q.num_blocks();
  {
    const auto& v = r.need(w);
    if (v.dtype != io::DType::u8)
      r.fail(w, fmt::format("has dtype {}: only bnb_4bit_quant_storage uint8 is supported",
                            io::dtype_name(v.dtype)));
  }
  q.weight = r.bytes(w, nbytes, {{nbytes, 1}, {nbytes}});
  if (nested) {
    q.absmax_q = r.bytes(w + ".absmax", blocks, {{blocks}});
    const int64_t nb = (blocks + q.nested_blocksize - 1) / q.nested_blocksize;
    q.nested_absmax = r.floats(w + ".nested_absmax", nb, /*nonneg=*/true);
    q.nested_quant_map = r.floats(w + ".nested_quant_map", 256);
  } else {
    const auto* a = r.find(w + ".absmax");
    if (a != nullptr && a->dtype == io::DType::u8)
      r.fail(w + ".absmax",
             "holds uint8 codes (double quantization) but the quant state has no "
             "nested_* entries");
    q.absmax = r.floats(w + ".absmax", blocks, /*nonneg=*/true);
    for (const char* extra : {".nested_absmax", ".nested_quant_map"})
      if (r.find(w + extra) != nullptr)
        r.fail(w + extra, "is present but the quant state has no nested_* entries");
  }
  q.quant_map = r.floats(w + ".quant_map", 16);
  return q;
}

}  // namespace sllm::load::bnb
