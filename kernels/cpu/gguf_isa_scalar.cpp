// The scalar instantiation of the GGUF block kernels: always compiled, the fallback on any CPU.
#include "kernels/cpu/gguf_isa.h"

#define SLLM_GGUF_ISA Isa::scalar
#include "kernels/cpu/gguf_body.h"
