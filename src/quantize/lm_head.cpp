#include "quantize/lm_head.h"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "core/error.h"
#include "core/memory.h"
#include "quant/intq.h"

namespace sllm::quantize {

model::Linear int8_lm_head(const model::Linear& head, double threshold) {
  SLLM_CHECK(head.is<model::DenseFormat>(),
             "lm_head is already quantized ({}); quantize the original dense model",
             head.format_name());
  SLLM_CHECK(threshold >= 0, "int8 lm_head: threshold must be >= 0, got {}", threshold);
  const auto w = head.dense_weight().to(at::kCPU, at::kFloat).contiguous();
  const int64_t out = w.size(0), in = w.size(1);
  auto q = quant::quantize_int8(w.data_ptr<float>(), out, in);
  return model::make_int8_linear({{"lm_head", out}}, {q}, head.bias, threshold).to(head.device());
}

std::shared_ptr<const model::LlamaModel> quantize_lm_head(const model::LlamaModel& m,
                                                          double threshold) {
  return std::make_shared<const model::LlamaModel>(
      m.with_lm_head(int8_lm_head(m.lm_head(), threshold)));
}

std::string describe_lm_head(const model::LlamaModel& m) {
  const auto& h = m.lm_head();
  return fmt::format("{}{}, {}", h.format_name(),
                     m.config().tie_embeddings ? " (tied to the embedding)" : "",
                     memory::format_bytes(static_cast<uint64_t>(h.weight_bytes())));
}

}  // namespace sllm::quantize
