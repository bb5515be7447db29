// NF4 / FP4 weights in bitsandbytes' layout. See nf4.h and docs/nf4.md.
#include "quant/nf4.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "kernels/cpu/nf4.h"

namespace sllm::quant {
namespace {

namespace k = sllm::kernels::cpu;

k::Quant4Type parse_type(const std::string& t) {
  if (t == "nf4") return k::Quant4Type::kNf4;
  if (t == "fp4") return k::Quant4Type::kFp4;
  SLLM_FAIL("nf4: quant_type must be \"nf4\" or \"fp4\", got \"{}\"", t);
}

bool is_pow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    SLLM_CHECK(d > 0, "nf4: shape dimensions must be positive, got {}", d);
    n *= d;
  }
  return n;
}

// Python json.dumps separators (", " and ": ") around nlohmann-formatted scalars; nlohmann's
// shortest round-trip doubles print like Python's repr for the values written here.
std::string dump_py(const nlohmann::ordered_json& j) {
  if (j.is_object()) {
    std::string s = "{";
    bool first = true;
    for (const auto& [key, val] : j.items()) {
      if (!first) s += ", ";
      first = false;
      s += nlohmann::json(key).dump() + ": " + dump_py(val);
    }
    return s + "}";
  }
  if (j.is_array()) {
    std::string s = "[";
    for (size_t i = 0; i < j.size(); ++i) s += (i ? ", " : "") + dump_py(j[i]);
    return s + "]";
  }
  return j.dump();
}

}  // namespace

int64_t Nf4Weight::numel() const { return product(shape); }

Nf4Weight quantize_nf4(const float* w, std::vector<int64_t> shape, const Nf4Options& opt) {
  SLLM_CHECK(w != nullptr, "nf4: null input");
  SLLM_CHECK(!shape.empty(), "nf4: empty shape");
  const int64_t n = product(shape);
  SLLM_CHECK(is_pow2(opt.blocksize) && opt.blocksize >= 64 && opt.blocksize <= 4096,
             "nf4: blocksize must be a power of two in 64..4096, got {}", opt.blocksize);
  SLLM_CHECK(opt.nested_blocksize == 256,
             "nf4: nested blocksize must be 256 (as bitsandbytes), got {}", opt.nested_blocksize);
  SLLM_CHECK(opt.dtype == "float32" || opt.dtype == "float16" || opt.dtype == "bfloat16",
             "nf4: dtype must be float32, float16 or bfloat16, got \"{}\"", opt.dtype);
  const k::Quant4Type type = parse_type(opt.quant_type);

  Nf4Weight q;
  q.blocksize = opt.blocksize;
  q.nested_blocksize = opt.nested_blocksize;
  q.quant_type = opt.quant_type;
  q.dtype = opt.dtype;
  q.shape = std::move(shape);
  const float* code = k::quant4_code(type);
  q.quant_map.assign(code, code + 16);

  const int64_t blocks = k::quant_num_blocks(n, q.blocksize);
  q.weight.resize(static_cast<size_t>(k::quant4_packed_bytes(n)));
  std::vector<float> absmax(static_cast<size_t>(blocks));
  k::quantize_4bit(w, n, q.blocksize, type, q.weight.data(), absmax.data());

  if (!opt.double_quant) {
    q.absmax = std::move(absmax);
    return q;
  }
  q.offset = opt.mean ? opt.mean(absmax.data(), blocks) : k::mean_f32(absmax.data(), blocks);
  for (float& a : absmax) a -= q.offset;
  q.nested_quant_map.assign(k::bnb_dynamic_map(), k::bnb_dynamic_map() + 256);
  q.absmax_q.resize(static_cast<size_t>(blocks));
  q.nested_absmax.resize(static_cast<size_t>(k::quant_num_blocks(blocks, q.nested_blocksize)));
  k::quantize_blockwise_8bit(q.nested_quant_map.data(), absmax.data(), blocks, q.nested_blocksize,
                             q.absmax_q.data(), q.nested_absmax.data());
  return q;
}

std::vector<float> dequantized_absmax(const Nf4Weight& q) {
  const int64_t blocks = q.num_blocks();
  if (!q.double_quant()) {
    SLLM_CHECK(static_cast<int64_t>(q.absmax.size()) == blocks,
               "nf4: expected {} absmax values, got {}", blocks, q.absmax.size());
    return q.absmax;
  }
  SLLM_CHECK(static_cast<int64_t>(q.absmax_q.size()) == blocks,
             "nf4: expected {} absmax codes, got {}", blocks, q.absmax_q.size());
  SLLM_CHECK(q.nested_quant_map.size() == 256,
             "nf4: nested_quant_map must have 256 entries, got {}", q.nested_quant_map.size());
  SLLM_CHECK(static_cast<int64_t>(q.nested_absmax.size()) ==
                 k::quant_num_blocks(blocks, q.nested_blocksize),
             "nf4: nested_absmax has {} values for {} absmax codes", q.nested_absmax.size(),
             blocks);
  std::vector<float> a(static_cast<size_t>(blocks));
  k::dequantize_blockwise_8bit(q.nested_quant_map.data(), q.absmax_q.data(), q.nested_absmax.data(),
                               blocks, q.nested_blocksize, a.data());
  for (float& v : a) v += q.offset;
  return a;
}

void dequantize(const Nf4Weight& q, float* out) {
  const k::Quant4Type type = parse_type(q.quant_type);
  SLLM_CHECK(is_pow2(q.blocksize) && q.blocksize >= 64 && q.blocksize <= 4096,
             "nf4: blocksize must be a power of two in 64..4096, got {}", q.blocksize);
  const int64_t n = q.numel();
  SLLM_CHECK(static_cast<int64_t>(q.weight.size()) == k::quant4_packed_bytes(n),
             "nf4: expected {} packed bytes for {} elements, got {}", k::quant4_packed_bytes(n), n,
             q.weight.size());
  const std::vector<float> absmax = dequantized_absmax(q);
  k::dequantize_4bit(q.weight.data(), absmax.data(), n, q.blocksize, type, out);
}

std::string quant_state_json(const Nf4Weight& q) {
  nlohmann::ordered_json j;
  j["quant_type"] = q.quant_type;
  j["blocksize"] = q.blocksize;
  j["dtype"] = q.dtype;
  j["shape"] = q.shape;
  if (q.double_quant()) {
    j["nested_blocksize"] = q.nested_blocksize;
    j["nested_dtype"] = "float32";
    j["nested_offset"] = static_cast<double>(q.offset);
  }
  return dump_py(j);
}

}  // namespace sllm::quant
