// Small helpers the layer-by-layer quantizers share.
#pragma once

#include "model/llama.h"

namespace sllm::quantize {

// A Linear with the same parts and bias whose weight is w (dense).
model::Linear with_weight(const model::Linear& l, at::Tensor w);

// A deep copy of the layer with every Linear dense fp32 (quantized ones dequantized), so that
// it can be scaled and quantized in place without touching the source model.
model::DecoderLayer dense_copy(const model::DecoderLayer& L);

}  // namespace sllm::quantize
