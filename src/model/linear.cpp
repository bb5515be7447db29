#include "model/linear.h"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "quant/intq.h"
#include "quant/nf4.h"

namespace sllm::model {

namespace {
thread_local bool t_training = false;
thread_local const std::vector<at::Tensor>* t_served_rows = nullptr;
}  // namespace

TrainingScope::TrainingScope(bool on) : prev_(t_training) { t_training = on; }
TrainingScope::~TrainingScope() { t_training = prev_; }
bool TrainingScope::active() { return t_training; }

ServedAdapterRows::ServedAdapterRows(std::vector<at::Tensor> rows_by_id)
    : rows_(std::move(rows_by_id)), prev_(t_served_rows) {
  t_served_rows = &rows_;
}
ServedAdapterRows::~ServedAdapterRows() { t_served_rows = prev_; }
const at::Tensor* ServedAdapterRows::rows(int32_t k) {
  if (!t_served_rows || k < 0 || static_cast<size_t>(k) >= t_served_rows->size()) return nullptr;
  const at::Tensor& t = (*t_served_rows)[static_cast<size_t>(k)];
  return t.defined() && t.numel() > 0 ? &t : nullptr;
}

at::Tensor Linear::base_forward(const at::Tensor& x) const {
  return std::visit([&](const auto& f) { return f.forward(x, bias); }, weight);
}

at::Tensor Linear::forward(const at::Tensor& x) const {
  auto y = base_forward(x);
  if (lora.empty()) return y;
  const bool train = TrainingScope::active();
  auto delta = [&](const LoraAdapter& a) {
    auto xin = (train && a.dropout > 0) ? at::dropout(x, a.dropout, true) : x;
    return at::linear(at::linear(xin.to(a.A.scalar_type()), a.A), a.B).mul(a.scale);
  };
  bool served = false;
  for (const auto& a : lora) served = served || a.served_id != 0;
  if (served) y = add_served(x, y);
  if (parts.size() <= 1) {
    for (const auto& a : lora)
      if (a.served_id == 0) y = y + delta(a).to(y.scalar_type());
    return y;
  }
  // Fused weight: add each adapter's delta to its part's rows (out of place, autograd-friendly).
  std::vector<int64_t> rows;
  for (const auto& p : parts) rows.push_back(p.rows);
  auto chunks = y.split_with_sizes(rows, -1);
  std::vector<at::Tensor> outs(chunks.begin(), chunks.end());
  for (const auto& a : lora)
    if (a.served_id == 0) outs[a.part] = outs[a.part] + delta(a).to(y.scalar_type());
  return at::cat(outs, -1);
}

at::Tensor Linear::add_served(const at::Tensor& x, at::Tensor y) const {
  // Inference only: each served adapter adds its delta to its own rows, in place.
  const at::Tensor x2 = x.reshape({-1, x.size(-1)});
  at::Tensor y2 = y.reshape({-1, y.size(-1)});
  for (const auto& a : lora) {
    const at::Tensor* idx = a.served_id != 0 ? ServedAdapterRows::rows(a.served_id) : nullptr;
    if (!idx) continue;
    const auto xs = x2.index_select(0, *idx).to(a.A.scalar_type());
    const auto d = at::linear(at::linear(xs, a.A), a.B).mul(a.scale).to(y.scalar_type());
    y2.narrow(1, part_offset(a.part), a.B.size(0)).index_add_(0, *idx, d);
  }
  return y2.view(y.sizes());
}

at::Device Linear::device() const {
  return std::visit([](const auto& f) { return f.device(); }, weight);
}

int64_t Linear::in_features() const {
  return std::visit([](const auto& f) { return f.in(); }, weight);
}

int64_t Linear::out_features() const {
  return std::visit([](const auto& f) { return f.out(); }, weight);
}

std::string_view Linear::kind() const {
  return std::visit([](const auto& f) { return f.kind; }, weight);
}

void Linear::wrong_format(std::string_view want) const {
  SLLM_FAIL("expected a {} weight, but this Linear ({}) holds {}", want,
            parts.empty() ? std::string("unnamed") : parts.front().name, format_name());
}

Linear Linear::to(at::Device device, std::optional<at::ScalarType> dtype) const {
  Linear out = *this;
  out.weight =
      std::visit([&](const auto& f) -> LinearWeight { return f.to(device, dtype); }, weight);
  if (bias.defined()) out.bias = bias.to(device, dtype.value_or(bias.scalar_type())).contiguous();
  for (auto& a : out.lora) {
    a.A = a.A.to(device);
    a.B = a.B.to(device);
  }
  return out;
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
  auto w = std::visit([](const auto& f) { return f.dequantize(); }, weight);
  if (parts.size() <= 1) return w;
  return w.narrow(0, part_offset(i), parts[i].rows);
}

std::string Linear::format_name() const {
  return std::visit([](const auto& f) { return f.name(); }, weight);
}

int64_t Linear::weight_bytes() const {
  int64_t b = std::visit([](const auto& f) { return f.nbytes(); }, weight);
  if (bias.defined()) b += bias.nbytes();
  return b;
}

quant::IntQWeight Linear::intq_part(int i) const {
  const auto& f = get<IntQFormat>();
  if (parts.size() <= 1) return f.slice(0, f.out());
  return f.slice(part_offset(i), parts[i].rows);
}

quant::Int8Weight Linear::int8_part(int i) const {
  const auto& f = get<Int8Format>();
  if (parts.size() <= 1) return f.slice(0, f.out());
  return f.slice(part_offset(i), parts[i].rows);
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
  Nf4Format f;
  f.t.out = out;
  f.t.in = in;
  f.t.blocksize = bs;
  f.t.packed = at::empty({bytes}, at::kByte);
  f.t.code = at::tensor(q[0].quant_map, at::kFloat);
  std::vector<at::Tensor> absmax;
  auto* dst = f.t.packed.data_ptr<uint8_t>();
  for (auto& w : q) {
    std::memcpy(dst, w.weight.data(), w.weight.size());
    dst += w.weight.size();
    absmax.push_back(at::tensor(quant::dequantized_absmax(w), at::kFloat));
    std::vector<uint8_t>().swap(w.weight);  // the bytes now live in t.packed
    f.states.push_back(std::make_shared<const quant::Nf4Weight>(std::move(w)));
  }
  f.t.absmax = at::cat(absmax);
  Linear l;
  l.weight = std::move(f);
  l.bias = std::move(bias);
  l.parts = std::move(parts);
  return l;
}

Linear make_intq_linear(std::vector<LinearPart> parts, const std::vector<quant::IntQWeight>& q,
                        at::Tensor bias, std::string method) {
  SLLM_CHECK(!q.empty() && q.size() == parts.size(), "int linear: {} parts but {} weights",
             parts.size(), q.size());
  const auto& q0 = q[0];
  int64_t out = 0;
  for (size_t i = 0; i < q.size(); ++i) {
    SLLM_CHECK(q[i].in == q0.in && q[i].bits == q0.bits && q[i].group_size == q0.group_size &&
                   q[i].g_idx == q0.g_idx && q[i].sym == q0.sym,
               "quantized parts of one linear must share in_features, bits, group size and "
               "g_idx ({})",
               parts[i].name);
    out += q[i].out;
  }
  // Act-order: columns sorted by group so that groups are contiguous (a stable sort keeps the
  // order within a group), and the matmul gathers x by the same permutation.
  std::vector<int64_t> perm;
  bool trivial = true;
  for (int64_t i = 0; i < q0.in && !q0.g_idx.empty(); ++i)
    trivial = trivial && q0.g_idx[i] == i / q0.group_size;
  if (!trivial) {
    perm.resize(q0.in);
    for (int64_t i = 0; i < q0.in; ++i) perm[i] = i;
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return q0.g_idx[a] < q0.g_idx[b]; });
    std::vector<int64_t> count(q0.groups(), 0);
    for (auto g : q0.g_idx) {
      SLLM_CHECK(g >= 0 && g < q0.groups(), "{}: g_idx value {} out of range 0..{}", parts[0].name,
                 g, q0.groups() - 1);
      ++count[g];
    }
    for (int64_t g = 0; g < q0.groups(); ++g)
      SLLM_CHECK(count[g] == std::min(q0.group_size, q0.in - g * q0.group_size),
                 "{}: g_idx assigns {} columns to group {} of size {}; sllm needs whole groups",
                 parts[0].name, count[g], g, q0.group_size);
  }
  const int64_t in = q0.in, groups = q0.groups();
  std::vector<uint8_t> vals(static_cast<size_t>(out * in));
  std::vector<float> scales, zeros;
  scales.reserve(out * groups);
  zeros.reserve(out * groups);
  int64_t row = 0;
  for (const auto& w : q) {
    for (int64_t o = 0; o < w.out; ++o, ++row)
      for (int64_t j = 0; j < in; ++j)
        vals[row * in + j] = w.q[o * in + (perm.empty() ? j : perm[j])];
    // Scales/zeros are per (row, group id); group ids are the same in storage order.
    scales.insert(scales.end(), w.scales.begin(), w.scales.end());
    zeros.insert(zeros.end(), w.zeros.begin(), w.zeros.end());
  }
  Linear l;
  l.weight = IntQFormat{{ops::make_intq_tensors(vals.data(), scales.data(), zeros.data(),
                                                perm.empty() ? nullptr : perm.data(), q0.bits,
                                                q0.group_size, out, in)},
                        std::move(method),
                        q0.sym};
  l.bias = std::move(bias);
  l.parts = std::move(parts);
  return l;
}

Linear make_int8_linear(std::vector<LinearPart> parts, const std::vector<quant::Int8Weight>& q,
                        at::Tensor bias, double threshold) {
  SLLM_CHECK(!q.empty() && q.size() == parts.size(), "int8 linear: {} parts but {} weights",
             parts.size(), q.size());
  int64_t out = 0;
  for (const auto& w : q) {
    SLLM_CHECK(w.in == q[0].in, "int8 parts of one linear must share in_features");
    out += w.out;
  }
  std::vector<int8_t> vals;
  std::vector<float> scb;
  vals.reserve(out * q[0].in);
  for (const auto& w : q) {
    vals.insert(vals.end(), w.q.begin(), w.q.end());
    scb.insert(scb.end(), w.scb.begin(), w.scb.end());
  }
  Linear l;
  l.weight = Int8Format{{ops::make_int8_tensors(vals.data(), scb.data(), out, q[0].in, threshold)}};
  l.bias = std::move(bias);
  l.parts = std::move(parts);
  return l;
}

}  // namespace sllm::model
