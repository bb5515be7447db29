// AWQ (Lin et al., 2023): activation-aware weight quantization. For each group of Linears that
// read the same input, search (grid of 20) per-input-channel scales s = x_mean^a / w_mean^(1-a)
// that minimise the error of the block's output when the weights are quantized as Q(W * s) / s;
// fold 1/s into the preceding norm or Linear (input_layernorm -> q,k,v; v -> o when the shapes
// match; post_attention_layernorm -> gate,up; up -> down), then search a per-group clipping
// range for every Linear but q and k, and quantize asymmetrically with zero points.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "model/llama.h"
#include "quant/intq.h"

namespace sllm::quantize {

struct AwqOptions {
  int bits = 4;
  int64_t group_size = 128;
  int64_t grid = 20;
  double max_shrink = 0.5;       // clipping search: down to (1 - max_shrink) of the max
  int64_t search_tokens = 2048;  // calibration tokens the scale search evaluates blocks on
  int64_t clip_tokens = 512;     // tokens the clipping search uses
};

// The asymmetric group quantizer AWQ uses (min/max per group, zero = -round(min / scale)),
// with fp16-rounded scales. w: fp32 [out, in].
quant::IntQWeight awq_quantize(const at::Tensor& w, int bits, int64_t group_size);

// One decoder layer through AWQ. x: the layer's input hidden states [S, T, hidden] (fp32).
// Returns the layer with the scales folded in and every Linear quantized (format intq, "awq").
model::DecoderLayer awq_layer(const model::LlamaModel& m, const model::DecoderLayer& layer,
                              const at::Tensor& x, const AwqOptions& o);

}  // namespace sllm::quantize
