// Bit packing of group-wise integer weights into the int32 words of the GPTQ v1 and AWQ GEMM
// checkpoint layouts, and back (no libtorch). Format details: docs/quant_formats.md.
//
// Throughout, q is the unpacked [out, in] row-major array of values in [0, 2^bits) and zeros /
// scales are [out, groups] row-major, as quant::IntQWeight holds them; packed arrays are
// row-major in the shapes the checkpoints store (PyTorch order).
#pragma once

#include <cstdint>
#include <vector>

namespace sllm::quant {

// IEEE half <-> float. The narrowing rounds to nearest even (overflow -> inf, NaN kept).
uint16_t fp32_to_fp16_bits(float x);
float fp16_bits_to_fp32(uint16_t h);

// ---- GPTQ v1 (AutoGPTQ / GPTQModel checkpoint_format "gptq"), bits 2, 4 or 8 ----
// qweight int32 [in * bits / 32, out]: input row i of column o sits in word (i / (32/bits), o)
// at bit (i % (32/bits)) * bits. Needs in % (32 / bits) == 0.
std::vector<int32_t> gptq_pack_qweight(const uint8_t* q, int64_t out, int64_t in, int bits);
std::vector<uint8_t> gptq_unpack_qweight(const int32_t* qweight, int64_t out, int64_t in, int bits);

// qzeros int32 [groups, out * bits / 32], packed along the output dim like qweight's rows, each
// field holding zero - 1 (the v1 off-by-one). The subtraction is done on the whole 32-bit word
// (GPTQModel's v2 -> v1 conversion), so a zero of 0 borrows from the next field and still
// round-trips; unpacking adds the same per-field ones back before splitting the word.
// v2 (checkpoint_format "gptq_v2") stores the zeros as they are. Needs out % (32 / bits) == 0;
// zeros must be integers in [0, 2^bits).
std::vector<int32_t> gptq_pack_qzeros(const float* zeros, int64_t out, int64_t groups, int bits,
                                      bool v1 = true);
std::vector<float> gptq_unpack_qzeros(const int32_t* qzeros, int64_t out, int64_t groups, int bits,
                                      bool v1 = true);

// ---- AWQ GEMM (AutoAWQ WQLinear_GEMM, version "gemm"), 4 bits only ----
// qweight int32 [in, out / 8]: output column o of input row i sits in word (i, o / 8) at nibble
// kAwqNibbleOf[o % 8] (the packing order is 0 2 4 6 1 3 5 7: nibble p holds column
// kAwqOrder[p]). qzeros int32 [groups, out / 8], same order, no off-by-one. Needs out % 8 == 0.
inline constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};
inline constexpr int kAwqNibbleOf[8] = {0, 4, 1, 5, 2, 6, 3, 7};
std::vector<int32_t> awq_pack_qweight(const uint8_t* q, int64_t out, int64_t in);
std::vector<uint8_t> awq_unpack_qweight(const int32_t* qweight, int64_t out, int64_t in);
std::vector<int32_t> awq_pack_qzeros(const float* zeros, int64_t out, int64_t groups);
std::vector<float> awq_unpack_qzeros(const int32_t* qzeros, int64_t out, int64_t groups);

// Both layouts store scales fp16 [groups, out] (transposed). Packing requires every scale to be
// finite and exactly representable in fp16 (IntQWeight keeps them fp16-rounded), so that the
// stored weight is the one in memory.
std::vector<uint16_t> pack_scales_fp16(const float* scales, int64_t out, int64_t groups);
std::vector<float> unpack_scales_fp16(const uint16_t* scales, int64_t out, int64_t groups);

}  // namespace sllm::quant
