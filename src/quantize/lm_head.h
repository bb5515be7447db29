// The output head quantized on its own (sllm quantize --lm-head int8): row-wise symmetric int8,
// the weight layout of bitsandbytes' Linear8bitLt (int8 values + one absmax "SCB" per output
// row), run by the int8 Linear kernels. Every decoder quantization method keeps the head dense
// by default; for a small model the head is the largest single matrix read per decoded token.
#pragma once

#include <memory>
#include <string>

#include "model/llama.h"

namespace sllm::quantize {

// The head `head` ([vocab, hidden], dense) as int8: q = round(127 * fp16(w) / SCB) per row with
// SCB = max |fp16(w)| of the row (bit for bit what bitsandbytes stores). threshold: the LLM.int8
// outlier threshold on |x| the matmul uses (0: no outlier decomposition).
model::Linear int8_lm_head(const model::Linear& head, double threshold);

// m with its head quantized by int8_lm_head. A tied head becomes its own int8 tensor (the
// copy's config is untied); the embedding stays as it is.
std::shared_ptr<const model::LlamaModel> quantize_lm_head(const model::LlamaModel& m,
                                                          double threshold);

// One line on m's head for sllm quantize / info / bench: its format, whether it is the tied
// embedding, and its bytes ("llm.int8 (threshold 0), 27.2 MiB").
std::string describe_lm_head(const model::LlamaModel& m);

}  // namespace sllm::quantize
