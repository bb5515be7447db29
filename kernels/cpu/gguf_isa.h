// The per-ISA entry points of the GGUF block kernels (gguf_body.h), one specialisation per Isa,
// defined by gguf_isa_scalar.cpp, gguf_isa_avx2.cpp and gguf_isa_avx512.cpp; gguf_matmul.cpp
// picks one at run time. Arguments as gguf_gemm_q8 / gguf_gemm_f32 in gguf_matmul.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/gguf_dequant.h"
#include "kernels/cpu/gguf_matmul.h"
#include "kernels/cpu/vec.h"

namespace sllm::kernels::cpu::gguf_isa {

template <Isa I>
void gemm_q8(const GgufView& w, int64_t rows, const int8_t* qx, const float* dx, const float* sx,
             const float* bias, float* y, int64_t o0, int64_t o1);
template <Isa I>
void gemm_f32(const GgufView& w, int64_t rows, const float* x, const float* bias, float* y,
              int64_t o0, int64_t o1);

}  // namespace sllm::kernels::cpu::gguf_isa
