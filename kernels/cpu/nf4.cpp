// NF4 / FP4 blockwise quantization, bit-exact with bitsandbytes' CPU path. See nf4.h and docs/nf4.md.
#include "kernels/cpu/nf4.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <vector>

namespace sllm::kernels::cpu {
namespace {

// bnb get_4bit_type("nf4"): quantiles of N(0,1), normalised to [-1, 1], stored as fp32.
constexpr std::array<float, 16> kNf4 = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// bnb get_4bit_type("fp4"): 1 sign, 2 exponent, 1 mantissa bit, in bit-pattern order, divided by
// 12 in fp32 (the largest magnitude).
const std::array<float, 16> kFp4 = [] {
  const float raw[16] = {0.0f,  0.0625f,  8.0f,  12.0f,  4.0f,  6.0f,  2.0f,  3.0f,
                         -0.0f, -0.0625f, -8.0f, -12.0f, -4.0f, -6.0f, -2.0f, -3.0f};
  std::array<float, 16> t{};
  for (int i = 0; i < 16; ++i) t[i] = raw[i] / 12.0f;
  return t;
}();

// Decision table: codes sorted by value (stable, so FP4's +0 (code 0) sorts before -0 (code 8)),
// with the fp32 midpoints (a + b) / 2 between neighbours. A scaled value x gets the sorted slot
// equal to the number of midpoints strictly below x (torch.bucketize, right=False), so a value
// exactly on a midpoint goes to the lower code.
struct Bounds {
  std::array<float, 15> mid{};
  std::array<uint8_t, 16> order{};
};

Bounds make_bounds(const std::array<float, 16>& code) {
  Bounds b;
  for (int i = 0; i < 16; ++i) b.order[i] = static_cast<uint8_t>(i);
  std::stable_sort(b.order.begin(), b.order.end(), [&](uint8_t l, uint8_t r) { return code[l] < code[r]; });
  for (int i = 0; i < 15; ++i) b.mid[i] = (code[b.order[i]] + code[b.order[i + 1]]) / 2.0f;
  return b;
}

const Bounds& bounds_for(Quant4Type type) {
  static const Bounds nf4 = make_bounds(kNf4);
  static const Bounds fp4 = make_bounds(kFp4);
  return type == Quant4Type::kNf4 ? nf4 : fp4;
}

inline uint8_t encode(const Bounds& b, float x) {
  int slot = 0;
  while (slot < 15 && b.mid[slot] < x) ++slot;
  return b.order[slot];
}

}  // namespace

const float* quant4_code(Quant4Type type) { return type == Quant4Type::kNf4 ? kNf4.data() : kFp4.data(); }

void quantize_4bit(const float* x, int64_t n, int64_t blocksize, Quant4Type type, uint8_t* packed,
                   float* absmax) {
  const Bounds& b = bounds_for(type);
  const int64_t full_blocks = n / blocksize;
  const int64_t blocks = quant_num_blocks(n, blocksize);
  uint8_t pending = 0;  // high nibble waiting for its low partner
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t begin = blk * blocksize;
    const int64_t end = std::min(n, begin + blocksize);
    float am = 0.0f;
    for (int64_t i = begin; i < end; ++i) am = std::max(am, std::fabs(x[i]));
    absmax[blk] = am;
    const float denom = std::max(am, 1e-38f);
    // bnb scales full blocks by the reciprocal and the trailing partial block by a division.
    const bool full = blk < full_blocks;
    const float recip = 1.0f / denom;
    for (int64_t i = begin; i < end; ++i) {
      float s = full ? x[i] * recip : x[i] / denom;
      s = std::clamp(s, -1.0f, 1.0f);
      const uint8_t q = encode(b, s);
      if ((i & 1) == 0) {
        pending = q;
      } else {
        packed[i >> 1] = static_cast<uint8_t>((pending << 4) | q);
      }
    }
  }
  if (n & 1) packed[n >> 1] = static_cast<uint8_t>((pending << 4) | encode(b, 0.0f));
}

void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                     Quant4Type type, float* out) {
  const float* code = quant4_code(type);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t byte = packed[i >> 1];
    const uint8_t q = (i & 1) ? (byte & 0x0F) : (byte >> 4);
    out[i] = code[q] * absmax[i / blocksize];
  }
}

namespace {
// torch.linspace(start, end, steps) for fp32 as torch's scalar CPU kernel computes it:
// step = (end - start) / (steps - 1); the first half counts up from start, the second half
// counts down from end.
std::vector<float> linspace_f32(float start, float end, int64_t steps) {
  std::vector<float> v(static_cast<size_t>(steps));
  if (steps == 1) {
    v[0] = start;
    return v;
  }
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int64_t halfway = steps / 2;
  for (int64_t i = 0; i < steps; ++i)
    v[i] = i < halfway ? start + step * static_cast<float>(i) : end - step * static_cast<float>(steps - i - 1);
  return v;
}

void append_means(std::vector<float>& data, int64_t items, float scale, bool is_signed) {
  const std::vector<float> b = linspace_f32(0.1f, 1.0f, items);
  for (size_t k = 0; k + 1 < b.size(); ++k) data.push_back(scale * ((b[k] + b[k + 1]) / 2.0f));
  if (is_signed)
    for (size_t k = 0; k + 1 < b.size(); ++k) data.push_back(-scale * ((b[k] + b[k + 1]) / 2.0f));
}
}  // namespace

void create_dynamic_map(float* out, bool is_signed, int max_exponent_bits, int total_bits) {
  std::vector<float> data;
  const int non_sign_bits = total_bits - 1;
  const int64_t additional_items = (int64_t{1} << (non_sign_bits - max_exponent_bits)) - 1;
  int i = 0;
  for (i = 0; i < max_exponent_bits; ++i) {
    const int64_t fraction_items = is_signed ? (int64_t{1} << (i + non_sign_bits - max_exponent_bits)) + 1
                                             : (int64_t{1} << (i + non_sign_bits - max_exponent_bits + 1)) + 1;
    // bnb multiplies the fp32 means by the Python float 10**e, which torch rounds to fp32 first.
    const float scale = static_cast<float>(std::pow(10.0, -(max_exponent_bits - 1) + i));
    append_means(data, fraction_items, scale, is_signed);
  }
  if (additional_items > 0) {
    const float scale = static_cast<float>(std::pow(10.0, -(max_exponent_bits - 1) + (i - 1)));
    append_means(data, additional_items + 1, scale, is_signed);
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  const size_t total = size_t{1} << total_bits;
  while (data.size() < total) data.push_back(0.0f);
  data.resize(total);
  std::sort(data.begin(), data.end());
  std::copy(data.begin(), data.end(), out);
}

void quantize_blockwise_8bit(const float* code256, const float* x, int64_t n, int64_t blocksize, uint8_t* q,
                             float* absmax) {
  const int64_t blocks = quant_num_blocks(n, blocksize);
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t begin = blk * blocksize;
    const int64_t end = std::min(n, begin + blocksize);
    float am = -FLT_MAX;
    for (int64_t i = begin; i < end; ++i) am = std::fmax(am, std::fabs(x[i]));
    absmax[blk] = am;
    for (int64_t i = begin; i < end; ++i) {
      const float v = x[i] / am;
      // Last code value <= v (index 0 when v is below code[0]), then step right only when the
      // right neighbour is strictly nearer.
      int64_t idx = (std::upper_bound(code256, code256 + 256, v) - code256) - 1;
      if (idx < 0) idx = 0;
      if (idx < 255) {
        const float dl = std::fabs(v - code256[idx]);
        const float dr = std::fabs(v - code256[idx + 1]);
        if (dr < dl) ++idx;
      }
      q[i] = static_cast<uint8_t>(idx);
    }
  }
}

void dequantize_blockwise_8bit(const float* code256, const uint8_t* q, const float* absmax, int64_t n,
                               int64_t blocksize, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = code256[q[i]] * absmax[i / blocksize];
}

float mean_f32(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return static_cast<float>(s) / static_cast<float>(n);
}

}  // namespace sllm::kernels::cpu
