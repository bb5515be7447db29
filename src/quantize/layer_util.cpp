#include "quantize/layer_util.h"

#include <ATen/ATen.h>

namespace sllm::quantize {

model::Linear with_weight(const model::Linear& l, at::Tensor w) {
  model::Linear out{std::move(w), l.bias.defined() ? l.bias.to(at::kFloat).clone() : l.bias};
  out.parts = l.parts;
  return out;
}

model::DecoderLayer dense_copy(const model::DecoderLayer& L) {
  auto dense = [](const model::Linear& l) {
    std::vector<at::Tensor> w;
    for (int p = 0; p < static_cast<int>(std::max<size_t>(l.parts.size(), 1)); ++p)
      w.push_back(l.dense_part(p).to(at::kFloat));
    return with_weight(l, at::cat(w, 0).contiguous());
  };
  return {L.attn_norm.to(at::kFloat).clone(),
          L.ffn_norm.to(at::kFloat).clone(),
          dense(L.qkv),
          dense(L.o),
          dense(L.gate_up),
          dense(L.down)};
}

}  // namespace sllm::quantize
