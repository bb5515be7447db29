#include "quant/intq.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace sllm::quant {

float round_to_fp16(float x) {
  if (!std::isfinite(x)) return x;
  const float a = std::fabs(x);
  if (a >= 65520.0f) return std::copysign(INFINITY, x);  // rounds up to fp16 infinity
  // fp16 has 10 mantissa bits; below 2^-14 the spacing is fixed at 2^-24 (subnormals).
  int e = 0;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  const float ulp = std::ldexp(1.0f, std::max(e - 11, -24));
  return std::copysign(std::nearbyint(a / ulp) * ulp, x);  // nearbyint: ties to even
}

uint8_t quantize_value(float w, float scale, float zero, int bits) {
  const float maxq = static_cast<float>((1 << bits) - 1);
  const float q = scale != 0.0f ? std::nearbyint(w / scale) + zero : zero;
  return static_cast<uint8_t>(std::clamp(q, 0.0f, maxq));
}

IntQWeight quantize_rtn(const float* w, int64_t out, int64_t in, const RtnOptions& opt) {
  SLLM_CHECK(opt.bits >= 2 && opt.bits <= 8, "bits must be 2..8, got {}", opt.bits);
  const int64_t gs = opt.group_size <= 0 ? in : opt.group_size;  // the last group may be partial
  IntQWeight q;
  q.bits = opt.bits;
  q.group_size = gs;
  q.out = out;
  q.in = in;
  q.sym = opt.sym;
  const int64_t groups = q.groups();
  q.q.resize(static_cast<size_t>(out * in));
  q.scales.resize(static_cast<size_t>(out * groups));
  q.zeros.resize(static_cast<size_t>(out * groups));
  const float maxq = static_cast<float>((1 << opt.bits) - 1);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* x = w + o * in + g * gs;
      const int64_t len = std::min(gs, in - g * gs);
      float lo = 0.0f, hi = 0.0f;  // the range always includes 0, as GPTQ's quantizer does
      for (int64_t i = 0; i < len; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
      }
      float scale, zero;
      if (opt.sym) {
        const float amax = std::max(-lo, hi);
        scale = round_to_fp16(2.0f * amax / maxq);
        zero = static_cast<float>(1 << (opt.bits - 1));
      } else {
        scale = round_to_fp16((hi - lo) / maxq);
        zero = scale != 0.0f ? std::clamp(std::nearbyint(-lo / scale), 0.0f, maxq) : 0.0f;
      }
      if (scale == 0.0f) {  // an all-zero group: any scale reproduces it; keep it representable
        scale = 1.0f;
        if (!opt.sym) zero = 0.0f;
      }
      q.scales[o * groups + g] = scale;
      q.zeros[o * groups + g] = zero;
      uint8_t* dst = q.q.data() + o * in + g * gs;
      for (int64_t i = 0; i < len; ++i) dst[i] = quantize_value(x[i], scale, zero, opt.bits);
    }
  }
  return q;
}

void dequantize(const IntQWeight& q, float* out) {
  const int64_t groups = q.groups();
  for (int64_t o = 0; o < q.out; ++o)
    for (int64_t i = 0; i < q.in; ++i) {
      const int64_t g = o * groups + q.group_of(i);
      out[o * q.in + i] = (static_cast<float>(q.q[o * q.in + i]) - q.zeros[g]) * q.scales[g];
    }
}

Int8Weight quantize_int8(const float* w, int64_t out, int64_t in) {
  // bitsandbytes' order of operations (Int8Params on an fp16 copy of the weight):
  // SCB = max|fp16(w)|, f = fp32(1 / SCB) * 127, q = round_half_even(fp16(w) * f).
  Int8Weight q;
  q.out = out;
  q.in = in;
  q.q.resize(static_cast<size_t>(out * in));
  q.scb.resize(static_cast<size_t>(out));
  std::vector<float> row(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    float amax = 0.0f;
    for (int64_t i = 0; i < in; ++i) {
      row[i] = round_to_fp16(w[o * in + i]);
      amax = std::max(amax, std::fabs(row[i]));
    }
    q.scb[o] = amax;
    const float f = amax > 0.0f ? (1.0f / amax) * 127.0f : 0.0f;
    for (int64_t i = 0; i < in; ++i)
      q.q[o * in + i] =
          static_cast<int8_t>(std::clamp(std::nearbyint(row[i] * f), -127.0f, 127.0f));
  }
  return q;
}

void dequantize(const Int8Weight& q, float* out) {
  for (int64_t o = 0; o < q.out; ++o)
    for (int64_t i = 0; i < q.in; ++i)
      out[o * q.in + i] = static_cast<float>(q.q[o * q.in + i]) * (q.scb[o] / 127.0f);
}

}  // namespace sllm::quant
