#include "model/linear.h"

#include <ATen/ATen.h>

#include <cstring>

#include "core/error.h"
#include "ops/nf4.h"
#include "quant/nf4.h"

namespace sllm::model {

namespace {
thread_local bool t_training = false;
}

TrainingScope::TrainingScope(bool on) : prev_(t_training) { t_training = on; }
TrainingScope::~TrainingScope() { t_training = prev_; }
bool TrainingScope::active() { return t_training; }

at::Tensor Linear::base_forward(const at::Tensor& x) const {
  if (format == WeightFormat::nf4) return ops::nf4_linear(x, nf4, bias);
  return at::linear(x, weight, bias);
}

at::Tensor Linear::forward(const at::Tensor& x) const {
  auto y = base_forward(x);
  if (lora.empty()) return y;
  const bool train = TrainingScope::active();
  auto delta = [&](const LoraAdapter& a) {
    auto xin = (train && a.dropout > 0) ? at::dropout(x, a.dropout, true) : x;
    return at::linear(at::linear(xin.to(a.A.scalar_type()), a.A), a.B).mul(a.scale);
  };
  if (parts.size() <= 1) {
    for (const auto& a : lora) y = y + delta(a).to(y.scalar_type());
    return y;
  }
  // Fused weight: add each adapter's delta to its part's rows (out of place, autograd-friendly).
  std::vector<int64_t> rows;
  for (const auto& p : parts) rows.push_back(p.rows);
  auto chunks = y.split_with_sizes(rows, -1);
  std::vector<at::Tensor> outs(chunks.begin(), chunks.end());
  for (const auto& a : lora) outs[a.part] = outs[a.part] + delta(a).to(y.scalar_type());
  return at::cat(outs, -1);
}

at::Device Linear::device() const {
  return format == WeightFormat::nf4 ? nf4.packed.device() : weight.device();
}

int64_t Linear::in_features() const {
  return format == WeightFormat::nf4 ? nf4.in : weight.size(1);
}

int64_t Linear::out_features() const {
  return format == WeightFormat::nf4 ? nf4.out : weight.size(0);
}

int64_t Linear::part_offset(int i) const {
  int64_t off = 0;
  for (int j = 0; j < i; ++j) off += parts[j].rows;
  return off;
}

int Linear::part_index(const std::string& name) const {
  for (size_t i = 0; i < parts.size(); ++i)
    if (parts[i].name == name) return static_cast<int>(i);
  return -1;
}

at::Tensor Linear::dense_part(int i) const {
  SLLM_CHECK(i >= 0 && i < static_cast<int>(std::max<size_t>(parts.size(), 1)),
             "linear part {} out of range", i);
  auto w = format == WeightFormat::nf4 ? ops::nf4_dequantize(nf4, at::kFloat) : weight;
  if (parts.size() <= 1) return w;
  return w.narrow(0, part_offset(i), parts[i].rows);
}

std::string Linear::format_name() const {
  switch (format) {
    case WeightFormat::dense:
      return std::string("dense ") + std::string(weight.dtype().name());
    case WeightFormat::nf4: {
      const auto& q = nf4_parts.empty() ? nullptr : nf4_parts.front();
      std::string s = q ? q->quant_type : std::string("nf4");
      s += " (blocksize " + std::to_string(nf4.blocksize);
      if (q && q->double_quant()) s += ", double quant";
      return s + ")";
    }
  }
  return "unknown";
}

int64_t Linear::weight_bytes() const {
  int64_t b = format == WeightFormat::nf4 ? nf4.nbytes() : weight.nbytes();
  if (bias.defined()) b += bias.nbytes();
  return b;
}

Linear make_nf4_linear(std::vector<LinearPart> parts, std::vector<quant::Nf4Weight> q,
                       at::Tensor bias) {
  SLLM_CHECK(!q.empty() && q.size() == parts.size(), "4-bit linear: {} parts but {} weights",
             parts.size(), q.size());
  const int64_t in = q[0].shape.at(1), bs = q[0].blocksize;
  int64_t out = 0, bytes = 0;
  for (size_t i = 0; i < q.size(); ++i) {
    SLLM_CHECK(q[i].shape.size() == 2 && q[i].shape[1] == in && q[i].blocksize == bs &&
                   q[i].quant_type == q[0].quant_type,
               "4-bit parts of one linear must share in_features, blocksize and type ({})",
               parts[i].name);
    SLLM_CHECK(q.size() == 1 || q[i].numel() % bs == 0,
               "{}: {} elements do not fill whole {}-element blocks; cannot fuse", parts[i].name,
               q[i].numel(), bs);
    out += q[i].shape[0];
    bytes += static_cast<int64_t>(q[i].weight.size());
  }
  Linear l;
  l.format = WeightFormat::nf4;
  l.bias = std::move(bias);
  l.parts = std::move(parts);
  l.nf4.out = out;
  l.nf4.in = in;
  l.nf4.blocksize = bs;
  l.nf4.packed = at::empty({bytes}, at::kByte);
  l.nf4.code = at::tensor(q[0].quant_map, at::kFloat);
  std::vector<at::Tensor> absmax;
  auto* dst = l.nf4.packed.data_ptr<uint8_t>();
  for (auto& w : q) {
    std::memcpy(dst, w.weight.data(), w.weight.size());
    dst += w.weight.size();
    absmax.push_back(at::tensor(quant::dequantized_absmax(w), at::kFloat));
    std::vector<uint8_t>().swap(w.weight);  // the bytes now live in nf4.packed
    l.nf4_parts.push_back(std::make_shared<const quant::Nf4Weight>(std::move(w)));
  }
  l.nf4.absmax = at::cat(absmax);
  return l;
}

}  // namespace sllm::model
