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
  model::DecoderLayer out = L;
  out.attn_norm = L.attn_norm.to(at::kFloat).clone();
  out.ffn_norm = L.ffn_norm.to(at::kFloat).clone();
  for (auto [name, l] : out.linears()) l = dense(l);
  return out;
}

}  // namespace sllm::quantize
