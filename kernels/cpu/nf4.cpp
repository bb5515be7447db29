// NF4 / FP4 blockwise quantization, bit-exact with bitsandbytes' CPU path. See nf4.h and
// docs/nf4.md.
#include "kernels/cpu/nf4.h"

#include <algorithm>
#include <array>
#include <bit>
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
  std::stable_sort(b.order.begin(), b.order.end(),
                   [&](uint8_t l, uint8_t r) { return code[l] < code[r]; });
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

// bnb's create_dynamic_map(signed=True) exactly as bitsandbytes 0.50.2 + torch 2.11 (x86-64 CPU)
// produced it, as fp32 bit patterns. torch.linspace's vectorized CPU kernel rounds some entries
// 1-2 ulp differently from the scalar formula in create_dynamic_map(), so the quantizer uses this.
constexpr uint32_t kBnbDynamicMapBits[256] = {
    0xbf7e3333u, 0xbf7a999au, 0xbf770000u, 0xbf736666u, 0xbf6fcccdu, 0xbf6c3333u, 0xbf68999au,
    0xbf650000u, 0xbf616666u, 0xbf5dcccdu, 0xbf5a3333u, 0xbf56999au, 0xbf530000u, 0xbf4f6666u,
    0xbf4bcccdu, 0xbf483333u, 0xbf44999au, 0xbf410000u, 0xbf3d6666u, 0xbf39cccdu, 0xbf363334u,
    0xbf32999au, 0xbf2f0000u, 0xbf2b6666u, 0xbf27cccdu, 0xbf243334u, 0xbf20999au, 0xbf1d0000u,
    0xbf196666u, 0xbf15cccdu, 0xbf123334u, 0xbf0e999au, 0xbf0b0000u, 0xbf076666u, 0xbf03ccccu,
    0xbf003333u, 0xbef93332u, 0xbef20000u, 0xbeeaccccu, 0xbee3999au, 0xbedc6666u, 0xbed53333u,
    0xbece0000u, 0xbec6ccccu, 0xbebf999au, 0xbeb86666u, 0xbeb13333u, 0xbeaa0000u, 0xbea2ccccu,
    0xbe9b999au, 0xbe946666u, 0xbe8d3334u, 0xbe860000u, 0xbe7d9999u, 0xbe6f3333u, 0xbe60cccdu,
    0xbe526666u, 0xbe440000u, 0xbe35999au, 0xbe273333u, 0xbe18cccdu, 0xbe0a6666u, 0xbdf80000u,
    0xbddb3334u, 0xbdc9eb85u, 0xbdc428f7u, 0xbdbe6667u, 0xbdb8a3d7u, 0xbdb2e148u, 0xbdad1eb8u,
    0xbda75c2au, 0xbda1999au, 0xbd9bd70au, 0xbd96147bu, 0xbd9051ebu, 0xbd8a8f5du, 0xbd84cccdu,
    0xbd7e147bu, 0xbd728f5du, 0xbd670a3du, 0xbd5b851fu, 0xbd500000u, 0xbd447ae1u, 0xbd38f5c3u,
    0xbd2d70a3u, 0xbd21eb85u, 0xbd166667u, 0xbd0ae148u, 0xbcfeb852u, 0xbce7ae15u, 0xbcd0a3d7u,
    0xbcb9999au, 0xbca28f5du, 0xbc8b851fu, 0xbc68f5c3u, 0xbc3ae148u, 0xbc1f3b64u, 0xbc160418u,
    0xbc0ccccdu, 0xbc039581u, 0xbbf4bc6au, 0xbbe24dd3u, 0xbbcfdf3bu, 0xbbbd70a4u, 0xbbab020du,
    0xbb989374u, 0xbb8624ddu, 0xbb676c8au, 0xbb428f5cu, 0xbb1db22du, 0xbaf1a9fcu, 0xbaa7ef9du,
    0xba7765ffu, 0xba59e83eu, 0xba3c6a80u, 0xba1eecc1u, 0xba016f01u, 0xb9c7e283u, 0xb98ce705u,
    0xb923d70bu, 0xb8ba1f4bu, 0xb88aefb3u, 0xb8378034u, 0xb7b24206u, 0xb70205ffu, 0xb65a1a94u,
    0xb513a3b7u, 0x00000000u, 0x3513a3b7u, 0x365a1a94u, 0x370205ffu, 0x37b24206u, 0x38378034u,
    0x388aefb3u, 0x38ba1f4bu, 0x3923d70bu, 0x398ce705u, 0x39c7e283u, 0x3a016f01u, 0x3a1eecc1u,
    0x3a3c6a80u, 0x3a59e83eu, 0x3a7765ffu, 0x3aa7ef9du, 0x3af1a9fcu, 0x3b1db22du, 0x3b428f5cu,
    0x3b676c8au, 0x3b8624ddu, 0x3b989374u, 0x3bab020du, 0x3bbd70a4u, 0x3bcfdf3bu, 0x3be24dd3u,
    0x3bf4bc6au, 0x3c039581u, 0x3c0ccccdu, 0x3c160418u, 0x3c1f3b64u, 0x3c3ae148u, 0x3c68f5c3u,
    0x3c8b851fu, 0x3ca28f5du, 0x3cb9999au, 0x3cd0a3d7u, 0x3ce7ae15u, 0x3cfeb852u, 0x3d0ae148u,
    0x3d166667u, 0x3d21eb85u, 0x3d2d70a3u, 0x3d38f5c3u, 0x3d447ae1u, 0x3d500000u, 0x3d5b851fu,
    0x3d670a3du, 0x3d728f5du, 0x3d7e147bu, 0x3d84cccdu, 0x3d8a8f5du, 0x3d9051ebu, 0x3d96147bu,
    0x3d9bd70au, 0x3da1999au, 0x3da75c2au, 0x3dad1eb8u, 0x3db2e148u, 0x3db8a3d7u, 0x3dbe6667u,
    0x3dc428f7u, 0x3dc9eb85u, 0x3ddb3334u, 0x3df80000u, 0x3e0a6666u, 0x3e18cccdu, 0x3e273333u,
    0x3e35999au, 0x3e440000u, 0x3e526666u, 0x3e60cccdu, 0x3e6f3333u, 0x3e7d9999u, 0x3e860000u,
    0x3e8d3334u, 0x3e946666u, 0x3e9b999au, 0x3ea2ccccu, 0x3eaa0000u, 0x3eb13333u, 0x3eb86666u,
    0x3ebf999au, 0x3ec6ccccu, 0x3ece0000u, 0x3ed53333u, 0x3edc6666u, 0x3ee3999au, 0x3eeaccccu,
    0x3ef20000u, 0x3ef93332u, 0x3f003333u, 0x3f03ccccu, 0x3f076666u, 0x3f0b0000u, 0x3f0e999au,
    0x3f123334u, 0x3f15cccdu, 0x3f196666u, 0x3f1d0000u, 0x3f20999au, 0x3f243334u, 0x3f27cccdu,
    0x3f2b6666u, 0x3f2f0000u, 0x3f32999au, 0x3f363334u, 0x3f39cccdu, 0x3f3d6666u, 0x3f410000u,
    0x3f44999au, 0x3f483333u, 0x3f4bcccdu, 0x3f4f6666u, 0x3f530000u, 0x3f56999au, 0x3f5a3333u,
    0x3f5dcccdu, 0x3f616666u, 0x3f650000u, 0x3f68999au, 0x3f6c3333u, 0x3f6fcccdu, 0x3f736666u,
    0x3f770000u, 0x3f7a999au, 0x3f7e3333u, 0x3f800000u,
};
}  // namespace

const float* quant4_code(Quant4Type type) {
  return type == Quant4Type::kNf4 ? kNf4.data() : kFp4.data();
}

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
    v[i] = i < halfway ? start + step * static_cast<float>(i)
                       : end - step * static_cast<float>(steps - i - 1);
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
    const int64_t fraction_items =
        is_signed ? (int64_t{1} << (i + non_sign_bits - max_exponent_bits)) + 1
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

const float* bnb_dynamic_map() {
  static const std::array<float, 256> m = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = std::bit_cast<float>(kBnbDynamicMapBits[i]);
    return t;
  }();
  return m.data();
}

void quantize_blockwise_8bit(const float* code256, const float* x, int64_t n, int64_t blocksize,
                             uint8_t* q, float* absmax) {
  // bnb's CPU quantizer does not search the code: it indexes a 65536-entry table whose entry i
  // counts the midpoints between neighbouring code values that lie strictly below
  // -1 + 2i/65535 (all fp32), so a value near a midpoint can take the farther code.
  std::vector<uint8_t> lut(65536);
  float mid[255];
  for (int k = 0; k < 255; ++k) mid[k] = 0.5f * (code256[k] + code256[k + 1]);
  for (int i = 0; i < 65536; ++i) {
    const float t = -1.0f + (2.0f * static_cast<float>(i)) / 65535.0f;
    lut[i] = static_cast<uint8_t>(std::lower_bound(mid, mid + 255, t) - mid);
  }
  const int64_t blocks = quant_num_blocks(n, blocksize);
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t begin = blk * blocksize;
    const int64_t end = std::min(n, begin + blocksize);
    float am = -FLT_MAX;
    for (int64_t i = begin; i < end; ++i) am = std::fmax(am, std::fabs(x[i]));
    absmax[blk] = am;
    const float inv = am == 0.0f ? 0.0f : 1.0f / am;
    for (int64_t i = begin; i < end; ++i) {
      if (am == 0.0f) {
        q[i] = 0;
        continue;
      }
      const float v = std::fmin(1.0f, std::fmax(-1.0f, x[i] * inv));
      const float pos = ((v + 1.0f) * 0.5f) * 65535.0f + 0.5f;
      q[i] = lut[static_cast<uint16_t>(pos)];
    }
  }
}

void dequantize_blockwise_8bit(const float* code256, const uint8_t* q, const float* absmax,
                               int64_t n, int64_t blocksize, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = code256[q[i]] * absmax[i / blocksize];
}

float mean_f32(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return static_cast<float>(s) / static_cast<float>(n);
}

}  // namespace sllm::kernels::cpu
