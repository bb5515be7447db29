#include "quantize/quantizer.h"

#include <ATen/ATen.h>

#include <array>

#include "core/error.h"
#include "core/progress.h"
#include "quant/intq.h"
#include "quantize/layer_util.h"

namespace sllm::quantize {
namespace {

constexpr std::array<const char*, 4> kStageNames = {"q,k,v", "o", "gate,up", "down"};

model::Linear& linear_of(model::DecoderLayer& L, int which) { return L.linears()[which].linear; }

// Row block [offset, offset + rows) of a quantized weight (the parts of a fused Linear).
quant::IntQWeight rows_of(const quant::IntQWeight& q, int64_t offset, int64_t rows) {
  quant::IntQWeight r = q;
  const int64_t g = q.groups();
  r.out = rows;
  r.q.assign(q.q.begin() + offset * q.in, q.q.begin() + (offset + rows) * q.in);
  r.scales.assign(q.scales.begin() + offset * g, q.scales.begin() + (offset + rows) * g);
  r.zeros.assign(q.zeros.begin() + offset * g, q.zeros.begin() + (offset + rows) * g);
  return r;
}

model::Linear intq_linear_from(const model::Linear& l, const quant::IntQWeight& q,
                               const std::string& method) {
  std::vector<quant::IntQWeight> parts;
  int64_t off = 0;
  for (const auto& p : l.parts) {
    parts.push_back(rows_of(q, off, p.rows));
    off += p.rows;
  }
  return model::make_intq_linear(l.parts, parts, l.bias, method);
}

at::Tensor dequantized(const quant::IntQWeight& q) {
  auto w = at::empty({q.out, q.in}, at::kFloat);
  quant::dequantize(q, w.data_ptr<float>());
  return w;
}

// Calibration-free methods quantize each Hugging Face module on its own.
model::Linear quantize_plain(const model::Linear& l, const QuantizeOptions& o) {
  std::vector<quant::IntQWeight> iq;
  std::vector<quant::Int8Weight> i8;
  for (int p = 0; p < static_cast<int>(l.parts.size()); ++p) {
    auto w = l.dense_part(p).to(at::kFloat).cpu().contiguous();
    if (o.method == "int8") {
      i8.push_back(quant::quantize_int8(w.data_ptr<float>(), w.size(0), w.size(1)));
    } else {
      quant::RtnOptions r;
      r.bits = o.bits;
      r.group_size = o.group_size;
      r.sym = o.sym;
      iq.push_back(quant::quantize_rtn(w.data_ptr<float>(), w.size(0), w.size(1), r));
    }
  }
  auto bias = l.bias.defined() ? l.bias.cpu() : l.bias;
  return o.method == "int8" ? model::make_int8_linear(l.parts, i8, bias, o.int8_threshold)
                            : model::make_intq_linear(l.parts, iq, bias, "rtn");
}

// GPTQ on one layer: each stage's Hessian comes from inputs that already went through the
// quantized earlier stages (true-sequential), as the reference implementation does.
model::DecoderLayer gptq_layer(const model::LlamaModel& m, const model::DecoderLayer& layer,
                               const at::Tensor& x, const QuantizeOptions& o, ProgressBar& bar,
                               int64_t done, int64_t li) {
  auto L = dense_copy(layer);
  model::DecoderLayer out = L;
  std::vector<Hessian> h;
  for (int s = 0; s < 4; ++s) h.emplace_back(linear_of(L, s).in_features());
  for (int s = 0; s < 4; ++s) {
    if (s == 0 || o.true_sequential) {
      model::LlamaModel::LinearTap tap = [&](int which, const at::Tensor& t) {
        if (which >= s && (o.true_sequential ? which == s : true)) h[which].add(t);
      };
      m.run_layer(L, x, &tap);
    }
    auto& lin = linear_of(L, s);
    auto q = gptq_quantize(lin.dense_weight(), h[s].matrix(), o.gptq);
    if (o.gptq_observer) o.gptq_observer({li, s, lin.dense_weight(), h[s].matrix(), &q});
    linear_of(out, s) = intq_linear_from(lin, q, "gptq");
    lin = with_weight(lin, dequantized(q));
    bar.update(done + s + 1,
               fmt::format("layer {}/{} {}", li + 1, m.config().num_layers, kStageNames[s]));
  }
  return out;
}

}  // namespace

bool needs_calibration(const std::string& method) { return method == "gptq" || method == "awq"; }

void check_options(const model::LlamaModel& m, const QuantizeOptions& o) {
  const auto& meth = o.method;
  SLLM_CHECK(meth == "rtn" || meth == "int8" || meth == "gptq" || meth == "awq",
             "unknown --method '{}': use rtn, int8, gptq, awq, nf4 or fp4", meth);
  if (meth == "awq")
    SLLM_CHECK(o.bits == 4, "awq supports --bits 4 only (the AWQ GEMM layout), got {}", o.bits);
  if (meth == "gptq")
    SLLM_CHECK(o.bits == 2 || o.bits == 4 || o.bits == 8,
               "gptq supports --bits 2, 4 or 8 (the GPTQ v1 layout packs 32/bits values per "
               "int32), got {}",
               o.bits);
  if (meth == "rtn")
    SLLM_CHECK(o.bits == 2 || o.bits == 4 || o.bits == 8,
               "rtn supports --bits 2, 4 or 8 (saved in the GPTQ v1 layout), got {}", o.bits);
  if (meth == "int8")
    SLLM_CHECK(o.bits == 8, "int8 (LLM.int8()) is 8-bit only, got --bits {}", o.bits);
  if (meth != "awq") return;  // GPTQ's layout allows a partial last group (g_idx = i / size)
  const int64_t gs = o.awq.group_size;
  SLLM_CHECK(gs > 0, "awq needs a group size (e.g. 64 or 128), got {}", gs);
  for (const auto& L : m.layers())
    for (const auto& [name, l] : L.linears())
      SLLM_CHECK(l.in_features() % gs == 0,
                 "--group-size {} does not divide the input width {} of {}; the AWQ GEMM "
                 "layout needs whole groups: use a divisor of it (e.g. 32 or 64)",
                 gs, l.in_features(), l.parts.front().name);
}

std::shared_ptr<const model::LlamaModel> quantize_model(const model::LlamaModel& m,
                                                        const QuantizeOptions& o,
                                                        const at::Tensor& calib) {
  check_options(m, o);
  for (const auto& L : m.layers())
    for (const auto& [name, l] : L.linears())
      SLLM_CHECK(l.is<model::DenseFormat>(),
                 "the model is already quantized ({}); quantize the original dense model",
                 l.format_name());
  const int64_t all_layers = m.config().num_layers;
  if (!needs_calibration(o.method)) {
    ProgressBar bar(o.method, all_layers);
    auto r =
        std::make_shared<model::LlamaModel>(m.map_linears([&](int64_t li, const model::Linear& l) {
          auto q = quantize_plain(l, o);
          if (l.device().is_cuda()) q = q.to(l.device());  // the kernels run where the model is
          if (&l == &m.layers()[li].down) bar.update(li + 1);
          return q;
        }));
    bar.finish();
    return r;
  }
  SLLM_CHECK(calib.defined() && calib.dim() == 2, "{} needs calibration tokens", o.method);
  SLLM_CHECK(m.device().is_cpu(),
             "{} runs on the CPU: load the model with --device cpu (the result runs anywhere)",
             o.method);
  SLLM_CHECK(o.max_layers == -1 || (o.max_layers >= 1 && o.max_layers <= all_layers),
             "max_layers must be -1 (all) or 1..{}, got {}", all_layers, o.max_layers);
  const int64_t layers = o.max_layers == -1 ? all_layers : o.max_layers;
  at::NoGradGuard no_grad;
  const bool gptq = o.method == "gptq";
  ProgressBar bar(o.method, gptq ? layers * 4 : layers);
  auto x = m.embed_tokens(calib.to(m.device())).to(at::kFloat);
  std::vector<model::DecoderLayer> out;
  for (int64_t li = 0; li < layers; ++li) {
    const auto& layer = m.layers()[li];
    if (gptq) {
      out.push_back(gptq_layer(m, layer, x, o, bar, li * 4, li));
      // The next layer sees this layer's quantized output.
      model::DecoderLayer deq = dense_copy(out.back());
      x = m.run_layer(deq, x);
    } else {
      out.push_back(awq_layer(m, layer, x, o.awq));
      // AWQ scales preserve the layer's function: the next layer sees the unquantized output.
      x = m.run_layer(layer, x);
      bar.update(li + 1, fmt::format("layer {}/{}", li + 1, layers));
    }
  }
  bar.finish();
  // The quantized layers replace the originals (AWQ also folded its scales into the norms).
  auto fix = [&](model::DecoderLayer L) {
    L.attn_norm = L.attn_norm.to(m.dtype());
    L.ffn_norm = L.ffn_norm.to(m.dtype());
    return L;
  };
  auto r = m.with_layer(0, fix(out[0]));
  for (int64_t li = 1; li < layers; ++li) r = r.with_layer(li, fix(out[li]));
  return std::make_shared<model::LlamaModel>(std::move(r));
}

}  // namespace sllm::quantize
