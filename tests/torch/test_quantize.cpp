// GPTQ, AWQ and the layer-by-layer driver (src/quantize) on random weights and tiny models.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "quant/intq.h"
#include "quantize/awq.h"
#include "quantize/gptq.h"
#include "quantize/quantizer.h"
#include "tiny_model.h"

namespace sllm::quantize {
namespace {

at::Tensor dequant(const quant::IntQWeight& q) {
  auto w = at::empty({q.out, q.in}, at::kFloat);
  quant::dequantize(q, w.data_ptr<float>());
  return w;
}

// Inputs with strongly correlated, unevenly scaled channels: where GPTQ's error feedback pays.
at::Tensor correlated_inputs(int64_t n, int64_t in) {
  auto base = at::randn({n, in / 4});
  auto x = at::cat({base, base * 0.9 + 0.1 * at::randn({n, in / 4}), at::randn({n, in / 2})}, 1);
  return x * (at::rand({in}) * 3 + 0.1);
}

double output_error(const at::Tensor& x, const at::Tensor& w, const at::Tensor& wq) {
  return (x.matmul(w.t()) - x.matmul(wq.t())).square().mean().item<double>();
}

TEST(Gptq, IdentityHessianIsRoundToNearest) {
  // With H = I no error is fed forward, so GPTQ must reduce to symmetric RTN exactly; also with
  // a partial last group (144 = 2 x 64 + 16).
  for (int64_t in : {128, 144}) {
    at::manual_seed(1);
    auto w = at::randn({24, in}) * 0.05;
    GptqOptions o;
    o.group_size = in == 128 ? 32 : 64;
    auto q = gptq_quantize(w, at::eye(in), o);
    quant::RtnOptions r;
    r.bits = 4;
    r.group_size = o.group_size;
    r.sym = true;
    auto wc = w.contiguous();
    auto ref = quant::quantize_rtn(wc.data_ptr<float>(), 24, in, r);
    EXPECT_EQ(q.q, ref.q);
    EXPECT_EQ(q.scales, ref.scales);
    EXPECT_EQ(q.zeros, ref.zeros);
    EXPECT_TRUE(q.g_idx.empty());
  }
}

TEST(Gptq, BeatsRoundToNearestOnCorrelatedInputs) {
  at::manual_seed(2);
  const int64_t in = 256;
  auto w = at::randn({64, in}) * 0.05;
  auto x = correlated_inputs(2048, in);
  Hessian h(in);
  h.add(x.narrow(0, 0, 1000));
  h.add(x.narrow(0, 1000, 1048));  // accumulating in pieces = one big batch
  EXPECT_TRUE(at::allclose(h.matrix(), x.t().matmul(x) * (2.0 / 2048), 1e-4, 1e-3));
  for (bool act_order : {false, true})
    for (bool static_groups : {false, true}) {
      GptqOptions o;
      o.group_size = 64;
      o.act_order = act_order;
      o.static_groups = static_groups;
      auto q = gptq_quantize(w, h.matrix(), o);
      quant::RtnOptions r;
      r.group_size = 64;
      r.sym = true;
      auto wc = w.contiguous();
      auto rtn = quant::quantize_rtn(wc.data_ptr<float>(), 64, in, r);
      const double eg = output_error(x, w, dequant(q)), er = output_error(x, w, dequant(rtn));
      EXPECT_LT(eg, 0.85 * er) << "act_order " << act_order << " static " << static_groups;
      // Act-order without static groups assigns groups by Hessian order: g_idx is needed, and
      // every group holds exactly group_size columns.
      EXPECT_EQ(q.g_idx.empty(), !(act_order && !static_groups));
      if (!q.g_idx.empty()) {
        std::vector<int> count(q.groups(), 0);
        for (auto g : q.g_idx) ++count.at(g);
        for (auto c : count) EXPECT_EQ(c, 64);
      }
    }
}

TEST(Gptq, DeadInputsAndDampening) {
  at::manual_seed(3);
  auto w = at::randn({8, 64});
  auto x = at::randn({4, 64});  // rank 4 only: H is singular without dampening
  x.select(1, 5).zero_();       // an input that is always zero
  Hessian h(64);
  h.add(x);
  GptqOptions o;
  o.group_size = 32;
  auto q = gptq_quantize(w, h.matrix(), o);
  auto d = dequant(q);
  EXPECT_TRUE(d.isfinite().all().item<bool>());
  EXPECT_EQ(d.select(1, 5).abs().max().item<float>(), 0.0f);  // dead column zeroed
}

TEST(Awq, QuantizerIsAsymmetricMinMax) {
  auto w = at::tensor({-1.0f, 0.5f, 1.0f, 2.0f}).reshape({1, 4});
  auto q = awq_quantize(w, 4, 4);
  EXPECT_EQ(q.scales[0], quant::round_to_fp16(3.0f / 15.0f));
  EXPECT_EQ(q.zeros[0], 5.0f);  // -round(-1 / 0.2)
  EXPECT_FALSE(q.sym);
  EXPECT_TRUE(at::allclose(dequant(q), w, 0, 0.11));
}

// Output error of a model against the dense original on random token windows.
double logits_error(const model::LlamaModel& ref, const model::LlamaModel& m,
                    const at::Tensor& ids) {
  return (ref.forward_full(ids) - m.forward_full(ids)).square().mean().item<double>();
}

TEST(QuantizeModel, EveryMethodRunsAndStaysClose) {
  auto m = fixtures::tiny_model(fixtures::tiny_config(/*kv_heads=*/4), 5);
  at::manual_seed(6);
  auto calib = at::randint(0, 256, {8, 32}, at::kLong);
  auto ids = at::randint(0, 256, {2, 24}, at::kLong);
  at::NoGradGuard ng;
  const double scale = m->forward_full(ids).square().mean().item<double>();
  for (const char* method : {"rtn", "int8", "gptq", "awq"}) {
    QuantizeOptions o;
    o.method = method;
    o.bits = std::string(method) == "int8" ? 8 : 4;
    o.group_size = 32;
    o.gptq.group_size = 32;
    o.awq.group_size = 32;
    o.awq.search_tokens = 64;
    o.awq.clip_tokens = 64;
    auto q = quantize_model(*m, o, needs_calibration(method) ? calib : at::Tensor());
    for (const auto& L : q->layers())
      for (const auto& [name, l] : L.linears())
        EXPECT_EQ(l.kind(), o.method == "int8" ? model::Int8Format::kind : model::IntQFormat::kind)
            << name;
    const double err = logits_error(*m, *q, ids);
    EXPECT_LT(err, (o.method == "int8" ? 1e-3 : 0.05) * scale) << method;
    // A quantized model is not quantized again.
    EXPECT_THROW(quantize_model(*q, o, calib), Error) << method;
  }
}

TEST(QuantizeModel, OptionsAreChecked) {
  auto m = fixtures::tiny_model(fixtures::tiny_config(), 5);
  QuantizeOptions o;
  o.method = "awq";
  o.bits = 8;
  EXPECT_THROW(check_options(*m, o), Error);  // awq is 4-bit only
  o.bits = 4;
  o.awq.group_size = 48;  // does not divide 64: the AWQ layout needs whole groups
  EXPECT_THROW(check_options(*m, o), Error);
  o.awq.group_size = 32;
  EXPECT_NO_THROW(check_options(*m, o));
  o.method = "rtn";
  o.group_size = 48;  // GPTQ's layout takes a partial last group
  EXPECT_NO_THROW(check_options(*m, o));
  o.method = "gptq";
  o.bits = 3;
  EXPECT_THROW(check_options(*m, o), Error);
}

}  // namespace
}  // namespace sllm::quantize
