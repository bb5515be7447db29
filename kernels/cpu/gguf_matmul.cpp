// GGUF block kernels: activation quantization and dequantization (plain code, baseline ISA) and
// the run-time choice of the fused matmul's instantiation (gguf_body.h through gguf_isa.h).
#include "kernels/cpu/gguf_matmul.h"

#include <cmath>

#include "kernels/cpu/gguf_isa.h"
#include "kernels/cpu/isa_kernels.h"

namespace sllm::kernels::cpu {

bool gguf_has_avx2() {
#ifdef SLLM_CPU_X86
  static const bool ok = isa::cpu_has_avx2() && __builtin_cpu_supports("f16c");
  return ok;
#else
  return false;
#endif
}

bool gguf_has_avx512() {
#ifdef SLLM_CPU_X86
  static const bool ok = gguf_has_avx2() && isa::cpu_has_avx512() &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return ok;
#else
  return false;
#endif
}

namespace {

Isa pick(GgufSimd simd) {
  if (simd == GgufSimd::kScalar) return Isa::scalar;
  if (simd != GgufSimd::kAvx2 && gguf_has_avx512()) return Isa::avx512;
  return gguf_has_avx2() ? Isa::avx2 : Isa::scalar;
}

}  // namespace

void gguf_quantize_q8(const float* x, int64_t n, int8_t* q, float* d, float* s) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + b * 32;
    float amax = 0.f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float db = amax / 127.f;
    const float id = db != 0.f ? 1.f / db : 0.f;
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int v = static_cast<int>(std::round(xb[j] * id));
      q[b * 32 + j] = static_cast<int8_t>(v);
      sum += v;
    }
    d[b] = db;
    s[b] = db * static_cast<float>(sum);
  }
}

void gguf_round_q8(const float* x, int64_t n, float* out) {
  int8_t q[32];
  float d, s;
  for (int64_t b = 0; b < n / 32; ++b) {
    gguf_quantize_q8(x + b * 32, 32, q, &d, &s);
    for (int j = 0; j < 32; ++j) out[b * 32 + j] = d * static_cast<float>(q[j]);
  }
}

void gguf_dequantize_rows(const GgufView& w, int64_t o0, int64_t o1, float* out) {
  // rows are whole blocks, so rows [o0, o1) are one run of blocks
  auto* f = w.type == 2    ? dequant_q4_0
            : w.type == 3  ? dequant_q4_1
            : w.type == 6  ? dequant_q5_0
            : w.type == 7  ? dequant_q5_1
            : w.type == 12 ? dequant_q4_k
            : w.type == 13 ? dequant_q5_k
            : w.type == 14 ? dequant_q6_k
                           : dequant_q8_0;
  if (o1 > o0) f(w.blocks + o0 * w.row_bytes(), out + o0 * w.in, (o1 - o0) * w.in);
}

void gguf_gemm_q8(const GgufView& w, int64_t rows, const int8_t* qx, const float* dx,
                  const float* sx, const float* bias, float* y, int64_t o0, int64_t o1,
                  GgufSimd simd) {
  if (rows <= 0 || o0 >= o1) return;
  switch (pick(simd)) {
#ifdef SLLM_CPU_X86
    case Isa::avx512:
      return gguf_isa::gemm_q8<Isa::avx512>(w, rows, qx, dx, sx, bias, y, o0, o1);
    case Isa::avx2:
      return gguf_isa::gemm_q8<Isa::avx2>(w, rows, qx, dx, sx, bias, y, o0, o1);
#endif
    default:
      return gguf_isa::gemm_q8<Isa::scalar>(w, rows, qx, dx, sx, bias, y, o0, o1);
  }
}

void gguf_gemm_f32(const GgufView& w, int64_t rows, const float* x, const float* bias, float* y,
                   int64_t o0, int64_t o1, GgufSimd simd) {
  if (rows <= 0 || o0 >= o1) return;
  switch (pick(simd)) {
#ifdef SLLM_CPU_X86
    case Isa::avx512:
      return gguf_isa::gemm_f32<Isa::avx512>(w, rows, x, bias, y, o0, o1);
    case Isa::avx2:
      return gguf_isa::gemm_f32<Isa::avx2>(w, rows, x, bias, y, o0, o1);
#endif
    default:
      return gguf_isa::gemm_f32<Isa::scalar>(w, rows, x, bias, y, o0, o1);
  }
}

}  // namespace sllm::kernels::cpu
