// The per-format kernels and helpers of a Linear's weight. See weight_format.h.
#include "model/weight_format.h"

#include <ATen/ATen.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "ops/gguf.h"
#include "ops/intq.h"
#include "ops/nf4.h"
#include "quant/intq.h"
#include "quant/nf4.h"

namespace sllm::model {

// ---- dense ----

at::Tensor DenseFormat::forward(const at::Tensor& x, const at::Tensor& bias) const {
  return at::linear(x, w, bias);
}

std::string DenseFormat::name() const { return "dense " + std::string(w.dtype().name()); }

int64_t DenseFormat::nbytes() const { return static_cast<int64_t>(w.nbytes()); }

DenseFormat DenseFormat::to(at::Device device, std::optional<at::ScalarType> dtype) const {
  if (!w.defined()) return *this;
  return {w.to(device, dtype.value_or(w.scalar_type())).contiguous()};
}

// ---- nf4 ----

at::Tensor Nf4Format::forward(const at::Tensor& x, const at::Tensor& bias) const {
  return ops::nf4_linear(x, t, bias);
}

at::Tensor Nf4Format::dequantize() const { return ops::nf4_dequantize(t, at::kFloat); }

std::string Nf4Format::name() const {
  const auto& q = states.empty() ? nullptr : states.front();
  std::string s = q ? q->quant_type : std::string("nf4");
  s += " (blocksize " + std::to_string(t.blocksize);
  if (q && q->double_quant()) s += ", double quant";
  return s + ")";
}

Nf4Format Nf4Format::to(at::Device device, std::optional<at::ScalarType>) const {
  return {{t.to(device)}, states};
}

// ---- intq ----

at::Tensor IntQFormat::forward(const at::Tensor& x, const at::Tensor& bias) const {
  return ops::intq_linear(x, t, bias);
}

at::Tensor IntQFormat::dequantize() const { return ops::intq_dequantize(t, at::kFloat); }

std::string IntQFormat::name() const {
  return fmt::format("{} int{} {} (group {}{})", method, t.bits, sym ? "sym" : "asym", t.group_size,
                     t.perm.defined() ? ", act-order" : "");
}

IntQFormat IntQFormat::to(at::Device device, std::optional<at::ScalarType>) const {
  return {{t.to(device)}, method, sym};
}

quant::IntQWeight IntQFormat::slice(int64_t off, int64_t rows) const {
  quant::IntQWeight q;
  q.bits = t.bits;
  q.group_size = t.group_size;
  q.out = rows;
  q.in = t.in;
  q.sym = sym;
  auto packed = t.qweight.narrow(0, off, rows).cpu().contiguous();
  at::Tensor vals;  // [rows, storage columns] unpacked to [rows, in], still in storage order
  if (t.storage_bits() == 4) {
    auto lo = packed.bitwise_and(0x0F), hi = packed.bitwise_right_shift(4);
    vals = at::stack({lo, hi}, -1).reshape({rows, t.in});
  } else {
    vals = packed;
  }
  if (t.perm.defined()) {  // storage column j is input column perm[j]
    auto inv = at::empty_like(vals);
    inv.index_copy_(1, t.perm.cpu(), vals);
    vals = inv;
    q.g_idx.resize(t.in);
    auto p = t.perm.cpu().contiguous();
    const auto* pp = p.data_ptr<int64_t>();
    for (int64_t j = 0; j < t.in; ++j) q.g_idx[pp[j]] = static_cast<int32_t>(j / t.group_size);
  }
  vals = vals.contiguous();
  q.q.assign(vals.data_ptr<uint8_t>(), vals.data_ptr<uint8_t>() + vals.numel());
  auto sc = t.scales.narrow(0, off, rows).cpu().contiguous();
  auto ze = t.zeros.narrow(0, off, rows).cpu().contiguous();
  q.scales.assign(sc.data_ptr<float>(), sc.data_ptr<float>() + sc.numel());
  q.zeros.assign(ze.data_ptr<float>(), ze.data_ptr<float>() + ze.numel());
  return q;
}

// ---- int8 ----

at::Tensor Int8Format::forward(const at::Tensor& x, const at::Tensor& bias) const {
  return ops::int8_linear(x, t, bias);
}

at::Tensor Int8Format::dequantize() const { return ops::int8_dequantize(t, at::kFloat); }

std::string Int8Format::name() const { return fmt::format("llm.int8 (threshold {})", t.threshold); }

Int8Format Int8Format::to(at::Device device, std::optional<at::ScalarType>) const {
  return {{t.to(device)}};
}

quant::Int8Weight Int8Format::slice(int64_t off, int64_t rows) const {
  quant::Int8Weight q;
  q.out = rows;
  q.in = t.in;
  auto w = t.q.narrow(0, off, rows).cpu().contiguous();
  auto s = t.scb.narrow(0, off, rows).cpu().contiguous();
  q.q.assign(w.data_ptr<int8_t>(), w.data_ptr<int8_t>() + w.numel());
  q.scb.assign(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
  return q;
}

// ---- gguf ----

at::Tensor GgufFormat::forward(const at::Tensor& x, const at::Tensor& bias) const {
  if (pieces.size() == 1) return ops::gguf_linear(x, pieces[0], bias);
  std::vector<at::Tensor> ys;
  int64_t off = 0;
  for (const auto& p : pieces) {
    ys.push_back(ops::gguf_linear(x, p, bias.defined() ? bias.narrow(0, off, p.out) : bias));
    off += p.out;
  }
  return at::cat(ys, -1);
}

at::Tensor GgufFormat::dequantize() const {
  std::vector<at::Tensor> ws;
  for (const auto& p : pieces) ws.push_back(ops::gguf_dequantize(p, at::kFloat));
  return ws.size() == 1 ? ws[0] : at::cat(ws, 0);
}

std::string GgufFormat::name() const {
  std::vector<std::string> types;
  for (const auto& p : pieces) types.push_back(p.type_name());
  return fmt::format("gguf {} {}", fmt::join(types, " + "),
                     pieces.front().q8_act ? "(int8 activations)" : "(fp32 activations)");
}

int64_t GgufFormat::nbytes() const {
  int64_t n = 0;
  for (const auto& p : pieces) n += p.nbytes();
  return n;
}

int64_t GgufFormat::out() const {
  int64_t n = 0;
  for (const auto& p : pieces) n += p.out;
  return n;
}

GgufFormat GgufFormat::to(at::Device device, std::optional<at::ScalarType>) const {
  GgufFormat g;
  for (const auto& p : pieces) g.pieces.push_back(p.to(device));
  return g;
}

const ops::GgufTensors& GgufFormat::only() const {
  SLLM_CHECK(pieces.size() == 1, "these GGUF blocks are {} pieces of different types, not one",
             pieces.size());
  return pieces.front();
}

const ops::GgufTensors* GgufFormat::piece_of(int64_t off, int64_t rows, int64_t* inside) const {
  int64_t start = 0;
  for (const auto& p : pieces) {
    if (off >= start && off + rows <= start + p.out) {
      *inside = off - start;
      return &p;
    }
    start += p.out;
  }
  return nullptr;
}

}  // namespace sllm::model
