// The scalar instantiation of the kernel bodies: always compiled, the fallback on any CPU.
#include "kernels/cpu/isa_kernels.h"

#define SLLM_KERNEL_ISA Isa::scalar
#include "kernels/cpu/int8_body.h"
#include "kernels/cpu/intq_body.h"
#include "kernels/cpu/nf4_body.h"
