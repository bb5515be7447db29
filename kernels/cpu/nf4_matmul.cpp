// NF4 / FP4 matmul entry points: pick the ISA at run time and call its instantiation of the
// shared bodies (nf4_body.h, through isa_kernels.h).
#include "kernels/cpu/nf4_matmul.h"

#include <vector>

#include "kernels/cpu/isa_kernels.h"

namespace sllm::kernels::cpu {

namespace isa {

float* scratch(int slot, int64_t n) {
  thread_local std::vector<float> bufs[2];
  std::vector<float>& b = bufs[slot];
  if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  return b.data();
}

bool cpu_has_avx2() {
#ifdef SLLM_CPU_X86
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#ifdef SLLM_CPU_X86
  // BW too: the AVX-512 instantiation is compiled for F + BW (the int8 kernels use it).
  static const bool ok =
      cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return ok;
#else
  return false;
#endif
}

}  // namespace isa

using isa::pick;

bool nf4_has_avx2() { return isa::cpu_has_avx2(); }
bool nf4_has_avx512() { return isa::cpu_has_avx512(); }

void nf4_dequantize_f32(const uint8_t* packed, const float* absmax, const float* code,
                        int64_t blocksize, int64_t e0, int64_t e1, float* out, Nf4Simd simd) {
  switch (pick(simd)) {
#ifdef SLLM_CPU_X86
    case Isa::avx512:
      return isa::nf4_dequant_f32<Isa::avx512>(packed, absmax, code, blocksize, e0, e1, out);
    case Isa::avx2:
      return isa::nf4_dequant_f32<Isa::avx2>(packed, absmax, code, blocksize, e0, e1, out);
#endif
    default:
      return isa::nf4_dequant_f32<Isa::scalar>(packed, absmax, code, blocksize, e0, e1, out);
  }
}

void nf4_dequantize_bf16(const uint8_t* packed, const float* absmax, const float* code,
                         int64_t blocksize, int64_t e0, int64_t e1, uint16_t* out, Nf4Simd simd) {
  switch (pick(simd)) {
#ifdef SLLM_CPU_X86
    case Isa::avx512:
      return isa::nf4_dequant_bf16<Isa::avx512>(packed, absmax, code, blocksize, e0, e1, out);
    case Isa::avx2:
      return isa::nf4_dequant_bf16<Isa::avx2>(packed, absmax, code, blocksize, e0, e1, out);
#endif
    default:
      return isa::nf4_dequant_bf16<Isa::scalar>(packed, absmax, code, blocksize, e0, e1, out);
  }
}

void nf4_gemv_f32(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
                  int64_t in, const float* x, const float* bias, float* y, int64_t o0, int64_t o1,
                  Nf4Simd simd) {
  switch (pick(simd)) {
#ifdef SLLM_CPU_X86
    case Isa::avx512:
      return isa::nf4_gemv<Isa::avx512>(packed, absmax, code, blocksize, in, x, bias, y, o0, o1);
    case Isa::avx2:
      return isa::nf4_gemv<Isa::avx2>(packed, absmax, code, blocksize, in, x, bias, y, o0, o1);
#endif
    default:
      return isa::nf4_gemv<Isa::scalar>(packed, absmax, code, blocksize, in, x, bias, y, o0, o1);
  }
}

void nf4_gemm_small_f32(const uint8_t* packed, const float* absmax, const float* code,
                        int64_t blocksize, int64_t out, int64_t in, int64_t rows, const float* x,
                        const float* bias, float* y, int64_t o0, int64_t o1, Nf4Simd simd) {
  if (rows <= 0 || o0 >= o1) return;
  switch (pick(simd)) {
#ifdef SLLM_CPU_X86
    case Isa::avx512:
      return isa::nf4_gemm_small<Isa::avx512>(packed, absmax, code, blocksize, out, in, rows, x,
                                              bias, y, o0, o1);
    case Isa::avx2:
      return isa::nf4_gemm_small<Isa::avx2>(packed, absmax, code, blocksize, out, in, rows, x, bias,
                                            y, o0, o1);
#endif
    default:
      return isa::nf4_gemm_small<Isa::scalar>(packed, absmax, code, blocksize, out, in, rows, x,
                                              bias, y, o0, o1);
  }
}

}  // namespace sllm::kernels::cpu
