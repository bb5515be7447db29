// The AVX2 (+ FMA, F16C) instantiation of the GGUF block kernels: int8 block dots through
// vpmaddubsw + vpmaddwd. Only the body gets the target (gguf_isa.h keeps the baseline).
#include "kernels/cpu/gguf_isa.h"

#ifdef SLLM_CPU_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define SLLM_GGUF_ISA Isa::avx2
#define SLLM_GGUF_SIMD 1
#include "kernels/cpu/gguf_body.h"
#pragma GCC pop_options
#endif
