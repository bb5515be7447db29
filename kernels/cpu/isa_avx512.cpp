// The AVX-512 (F + BW) instantiation of the kernel bodies. Everything included above the pragma
// (the standard library, vec.h) keeps the baseline target; only the bodies get AVX-512.
#include "kernels/cpu/isa_kernels.h"

#ifdef SLLM_CPU_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx2,fma")
// GCC 12 warns on the deliberately undefined pass-through operands inside its own AVX-512
// intrinsics when they are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define SLLM_KERNEL_ISA Isa::avx512
#include "kernels/cpu/int8_body.h"
#include "kernels/cpu/intq_body.h"
#include "kernels/cpu/nf4_body.h"
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
