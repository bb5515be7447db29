// The AVX-512 VNNI instantiation of the GGUF block kernels: int8 block dots through vpdpbusd on
// 256-bit vectors (one 32-element block each), fp32 blocks on 512-bit vectors; 8 or more rows of x
// through the panels of gguf_panel_body.h (int8 on the q8 path, fp32 on the f32 path). Only the
// body gets the target (gguf_isa.h keeps the baseline).
#include <cstdlib>
#include <memory>

#include "kernels/cpu/gguf_isa.h"

#ifdef SLLM_CPU_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
// GCC 12 warns on the deliberately undefined pass-through operands inside its own AVX-512
// intrinsics when they are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define SLLM_GGUF_ISA Isa::avx512
#define SLLM_GGUF_SIMD 1
#define SLLM_GGUF_PANEL 1
#include "kernels/cpu/gguf_body.h"
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
