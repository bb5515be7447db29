// The AVX2 + FMA instantiation of the kernel bodies. Everything included above the pragma (the
// standard library, vec.h) keeps the baseline target; only the bodies get AVX2.
#include "kernels/cpu/isa_kernels.h"

#ifdef SLLM_CPU_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SLLM_KERNEL_ISA Isa::avx2
#include "kernels/cpu/int8_body.h"
#include "kernels/cpu/intq_body.h"
#include "kernels/cpu/nf4_body.h"
#pragma GCC pop_options
#endif
