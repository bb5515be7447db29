// The inner step of the multi-row GEMM register tiles (nf4_body.h, intq_body.h), written once
// against Vec<I>. Included by those bodies inside their ISA's target region (isa_*.cpp).
#pragma once

namespace sllm::kernels::cpu::isa {
namespace {

// acc[k][r] += wv[k] * x[r * stride .. + W) for O outputs k and R rows r: each x vector is loaded
// once for all O outputs (GCC would otherwise fold the load into each FMA: O loads).
template <Isa I, int R, int O>
SLLM_VEC_INLINE void fma_tile(const typename Vec<I>::F (&wv)[O], const float* x, int64_t stride,
                              typename Vec<I>::F (&acc)[O][R]) {
  using V = Vec<I>;
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    auto xv = V::load(x + r * stride);
    if constexpr (O > 1) __asm__("" : "+v"(xv));
#pragma GCC unroll 4
    for (int k = 0; k < O; ++k) acc[k][r] = V::fma(wv[k], xv, acc[k][r]);
  }
}

}  // namespace
}  // namespace sllm::kernels::cpu::isa
