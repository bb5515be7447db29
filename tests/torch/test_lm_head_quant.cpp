// The output head quantized to int8 (sllm quantize --lm-head int8): its logits stay within the
// bound the quantization steps allow, the int8 kernel path equals the plain-libtorch reference,
// and a saved directory of every decoder layout loads back to the same head and logits, bit for
// bit; heads sllm cannot read are clear errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_write.h"
#include "io/safetensors.h"
#include "load/loader.h"
#include "load/tensor_io.h"
#include "load_checks.h"
#include "ops/intq.h"
#include "quant/nf4.h"
#include "quantize/lm_head.h"
#include "quantize/quantizer.h"
#include "tiny_model.h"

namespace fs = std::filesystem;
using namespace sllm;

namespace {

std::string temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("sllm_head_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d.string();
}

load::LoadedModel loaded(std::shared_ptr<const model::LlamaModel> m) {
  load::LoadedModel lm;
  lm.model = std::move(m);
  lm.tokenizer = fixtures::tiny_tokenizer();
  return lm;
}

at::Tensor ids() {
  at::manual_seed(7);
  return at::randint(0, 259, {2, 12}, at::kLong);
}

// Relative error of fp16 rounding (half the spacing of an 11-bit significand) and the slack for
// rounding x * (127 / absmax) with an inexact reciprocal (values up to 127, fp32).
constexpr double kFp16Rel = 1.0 / 2048;
constexpr double kStep = 0.5 + 1e-4;

// The int8 head's logits for final hidden states x [n, in], against the dense head w [out, in]:
// w is rounded to fp16 and quantized with step scb/127 per row (|error| <= |w| 2^-11 + scb/127
// * kStep); x is rounded to fp16 and quantized with step sx/127 per row (outlier columns, when
// there are any, keep x exactly, which only shrinks the error). So per logit
// |x.w - x^.w^| <= sum_i |x_i| dw_i + dx_i |w_i| + dx_i dw_i, plus fp32 rounding of the scales.
// Per element of a row of v: the largest error of fp16 rounding then int8 with step absmax/127.
at::Tensor int8_step_error(const at::Tensor& v) {
  auto absmax = v.to(at::kHalf).to(at::kFloat).abs().amax(1, true);
  return v.abs() * kFp16Rel + absmax / 127 * kStep;
}

at::Tensor logit_error_bound(const at::Tensor& x, const at::Tensor& w) {
  auto dw = int8_step_error(w), dx = int8_step_error(x);
  auto xa = x.abs(), wa = w.abs();
  return at::matmul(xa, dw.t()) + at::matmul(dx, wa.t()) + at::matmul(dx, dw.t()) +
         1e-5 * at::matmul(xa + dx, (wa + dw).t()) + 1e-6;
}

class LmHeadInt8 : public testing::TestWithParam<double> {};  // the outlier threshold

TEST_P(LmHeadInt8, LogitsWithinTheQuantizationBound) {
  at::NoGradGuard g;
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    auto m = fixtures::tiny_model(fixtures::tiny_config(2, false, tied));
    auto q = quantize::quantize_lm_head(*m, GetParam());
    ASSERT_TRUE(q->lm_head().is<model::Int8Format>());
    EXPECT_FALSE(q->config().tie_embeddings);
    // the embedding stays as it is (and the dense model's head too)
    EXPECT_TRUE(at::equal(q->embed(), m->embed()));
    EXPECT_EQ(m->lm_head().is<model::DenseFormat>(), true);
    auto x = m->hidden_full(ids()).reshape({-1, 64});
    auto w = m->lm_head().dense_weight();
    // the weight's step is its row's absmax / 127: every element within half a step (after fp16
    // rounding), and some element close to it (a finer step than promised would not reach 0.45)
    auto wd = ops::int8_dequantize(q->lm_head().get<model::Int8Format>().t, at::kFloat);
    auto step = w.to(at::kHalf).to(at::kFloat).abs().amax(1, true) / 127;
    auto in_steps = (((wd - w).abs() - w.abs() * kFp16Rel) / step).max().item<double>();
    EXPECT_LE(in_steps, kStep);
    EXPECT_GT(in_steps, 0.45);
    auto dense = at::matmul(x, w.t());
    auto got = q->logits(x);
    auto bound = logit_error_bound(x, w);
    auto err = (got - dense).abs();
    EXPECT_TRUE((err <= bound).all().item<bool>())
        << "worst excess " << (err - bound).max().item<double>();
    // not vacuous: the head did change, and the bound is small next to the logits
    EXPECT_GT(err.max().item<double>(), 0.0);
    EXPECT_LT(bound.max().item<double>(), 0.1 * dense.abs().max().item<double>());
    // the full forward runs on the int8 head too
    EXPECT_TRUE(at::equal(q->forward_full(ids()).reshape({-1, 259}), got));
  }
}

// The head's matmul (the CPU int8 kernels) against the plain-libtorch reference of the same
// arithmetic, and the dequantized weight against q * SCB / 127; at SmolLM2's hidden width with
// decode (1 row), small-batch and GEMM row counts.
TEST_P(LmHeadInt8, KernelMatchesTheLibtorchReference) {
  at::NoGradGuard g;
  at::manual_seed(3);
  model::Linear dense{at::randn({1000, 576}) * 0.05, {}};
  dense.parts = {{"lm_head", 1000}};
  auto head = quantize::int8_lm_head(dense, GetParam());
  const auto& t = head.get<model::Int8Format>().t;
  EXPECT_EQ(t.threshold, GetParam());
  auto wd = ops::ref::int8_dequantize(t, at::kFloat);
  auto by_hand = t.q.to(at::kFloat) * (t.scb.unsqueeze(1) / 127.0f);
  EXPECT_TRUE(at::allclose(wd, by_hand, 1e-6, 1e-7));
  for (int64_t rows : {1, 3, 40}) {
    SCOPED_TRACE(rows);
    auto x = at::randn({rows, 576});
    x.select(1, 5).fill_(8.0);  // an outlier column (decomposed when the threshold is 6)
    auto y = head.forward(x);
    auto ref = ops::ref::int8_linear(x, t, {});
    EXPECT_LE((y - ref).abs().max().item<double>(), 1e-5 * ref.abs().max().item<double>());
    auto bound = logit_error_bound(x, dense.dense_weight());
    EXPECT_TRUE(((at::linear(x, dense.dense_weight()) - y).abs() <= bound).all().item<bool>());
    // dequantize then at::linear: what is left is the activations' int8 step alone
    auto dx = int8_step_error(x), wa = wd.abs();
    auto act_bound = at::matmul(dx, wa.t()) + 1e-5 * at::matmul(x.abs() + dx, wa.t()) + 1e-6;
    auto act_err = (at::linear(x, wd) - y).abs();
    EXPECT_TRUE((act_err <= act_bound).all().item<bool>())
        << "worst excess " << (act_err - act_bound).max().item<double>();
    EXPECT_GT(act_err.max().item<double>(), 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Thresholds, LmHeadInt8, testing::Values(0.0, 6.0));

std::shared_ptr<const model::LlamaModel> to_nf4(const model::LlamaModel& m) {
  quant::Nf4Options o;
  return std::make_shared<model::LlamaModel>(m.map_linears([&](int64_t, const model::Linear& l) {
    std::vector<quant::Nf4Weight> q;
    for (int p = 0; p < static_cast<int>(l.parts.size()); ++p) {
      auto w = l.dense_part(p).contiguous();
      q.push_back(quant::quantize_nf4(w.data_ptr<float>(), w.sizes().vec(), o));
    }
    return model::make_nf4_linear(l.parts, std::move(q), l.bias);
  }));
}

// The decoder quantized by `method` (gptq layout: rtn; awq; bitsandbytes: int8, nf4).
std::shared_ptr<const model::LlamaModel> quantized(const model::LlamaModel& m,
                                                   const std::string& method) {
  if (method == "nf4") return to_nf4(m);
  quantize::QuantizeOptions o;
  o.method = method;
  o.bits = method == "int8" ? 8 : 4;
  o.group_size = 32;
  o.awq.group_size = 32;
  o.awq.search_tokens = 64;
  o.awq.clip_tokens = 64;
  at::Tensor calib;
  if (method == "awq") {
    at::manual_seed(5);
    calib = at::randint(0, 256, {8, 32}, at::kLong);
  }
  return quantize::quantize_model(m, o, calib);
}

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(io::read_file(path));
}

std::string file(const std::string& dir) { return (fs::path(dir) / "model.safetensors").string(); }

class LmHeadSaved : public testing::TestWithParam<std::string> {};  // the decoder's method

// quantize with --lm-head int8 -> save -> load: the same head bytes, threshold and logits, bit
// for bit; the layout written is bitsandbytes' int8 one, the embedding stays dense.
TEST_P(LmHeadSaved, RoundTripIsBitExact) {
  at::NoGradGuard g;
  const std::string method = GetParam();
  auto base = fixtures::tiny_model(fixtures::tiny_config());  // tied, as SmolLM2
  const double threshold = method == "int8" ? 6.0 : 0.0;      // what sllm quantize uses
  auto m = quantize::quantize_lm_head(*quantized(*base, method), threshold);
  const auto dir = temp_dir(method);
  load::save_hf_dir(loaded(m), dir, at::kFloat);
  auto back = load::load_model(dir).model;
  ASSERT_TRUE(back->lm_head().is<model::Int8Format>());
  EXPECT_FALSE(back->config().tie_embeddings);
  const auto &a = m->lm_head().get<model::Int8Format>().t,
             &b = back->lm_head().get<model::Int8Format>().t;
  EXPECT_TRUE(at::equal(a.q, b.q));
  EXPECT_TRUE(at::equal(a.scb, b.scb));
  EXPECT_EQ(a.threshold, b.threshold);
  EXPECT_TRUE(at::equal(back->embed(), base->embed()));
  auto la = m->forward_full(ids()), lb = back->forward_full(ids());
  EXPECT_TRUE(at::equal(la, lb)) << (la - lb).abs().max().item<double>();

  auto f = io::SafetensorsFile::open(file(dir));
  ASSERT_NE(f.find("lm_head.weight"), nullptr);
  EXPECT_EQ(f.find("lm_head.weight")->dtype, io::DType::i8);
  EXPECT_EQ(f.find("lm_head.weight")->shape, (std::vector<int64_t>{259, 64}));
  ASSERT_NE(f.find("lm_head.SCB"), nullptr);
  EXPECT_EQ(f.find("lm_head.SCB")->dtype, io::DType::f32);
  EXPECT_NE(f.find("lm_head.weight_format"), nullptr);
  EXPECT_EQ(f.find("model.embed_tokens.weight")->dtype, io::DType::f32);
  const auto cfg = read_json((fs::path(dir) / "config.json").string());
  EXPECT_EQ(cfg["tie_word_embeddings"], false);
  const auto& qc = cfg["quantization_config"];
  if (method == "int8") {
    // transformers then converts lm_head to Linear8bitLt too: an empty skip list, not null
    EXPECT_EQ(qc["llm_int8_skip_modules"], nlohmann::json::array());
    EXPECT_FALSE(qc.contains("sllm"));
  } else {
    EXPECT_EQ(qc["sllm"], nlohmann::json({{"lm_head", "int8"}}));
  }
  // saving the loaded model again writes the same bytes
  const auto again = dir + "_again";
  load::save_hf_dir(load::load_model(dir), again, at::kFloat);
  EXPECT_EQ(io::read_file(file(dir)), io::read_file(file(again)));
  // --dequantize writes the head dense, with the int8 head's values
  load::SaveOptions so;
  so.dequantize = true;
  const auto dense_dir = dir + "_dense";
  load::save_hf_dir(load::load_model(dir), dense_dir, at::kFloat, so);
  auto d = load::load_model(dense_dir).model;
  ASSERT_TRUE(d->lm_head().is<model::DenseFormat>());
  EXPECT_TRUE(at::equal(d->lm_head().dense_weight(), ops::int8_dequantize(a, at::kFloat)));
  for (const auto& p : {dir, again, dense_dir}) fs::remove_all(p);
}

INSTANTIATE_TEST_SUITE_P(Methods, LmHeadSaved, testing::Values("rtn", "awq", "int8", "nf4"));

TEST(LmHeadSaved, FloatHeadKeepsItsValues) {
  // an fp16 head (a directory saved in fp16) loads as fp16 under --dtype fp16 and converts
  // exactly to fp32 otherwise
  at::NoGradGuard g;
  auto m = quantized(*fixtures::tiny_model(fixtures::tiny_config(2, false, false)), "rtn");
  const auto dir = temp_dir("fp16");
  load::save_hf_dir(loaded(m), dir, at::kHalf);
  const auto w16 = m->lm_head().dense_weight().to(at::kHalf);
  load::LoadOptions lo;
  lo.dtype = at::kHalf;
  auto h = load::load_model(dir, lo).model;
  EXPECT_EQ(h->lm_head().dense_weight().scalar_type(), at::kHalf);
  EXPECT_TRUE(at::equal(h->lm_head().dense_weight(), w16));
  auto f = load::load_model(dir).model;
  EXPECT_TRUE(at::equal(f->lm_head().dense_weight(), w16.to(at::kFloat)));
  fs::remove_all(dir);
}

using Tensors = std::vector<std::pair<std::string, at::Tensor>>;

void edit_tensors(const std::string& dir, const std::function<void(Tensors&)>& fn) {
  auto t = load::read_tensors(file(dir));
  fn(t);
  fs::remove(file(dir));
  load::write_tensors(file(dir), t);
}

using fixtures::expect_load_error;

TEST(LmHeadSaved, HeadsSllmCannotReadAreClearErrors) {
  auto m = quantize::quantize_lm_head(
      *quantized(*fixtures::tiny_model(fixtures::tiny_config()), "rtn"), 0.0);
  const auto dir = temp_dir("broken");
  load::save_hf_dir(loaded(m), dir, at::kFloat);
  // a GPTQ-quantized head (qweight): no reader for it
  edit_tensors(dir, [](Tensors& t) {
    t.emplace_back("lm_head.qweight", at::zeros({8, 259}, at::kInt));
  });
  expect_load_error(dir, {"lm_head is stored quantized ('lm_head.qweight')", "int8 + SCB"});
  // an int8 weight without its SCB
  edit_tensors(dir, [](Tensors& t) {
    t.erase(std::remove_if(t.begin(), t.end(),
                           [](const auto& e) {
                             return e.first == "lm_head.qweight" || e.first == "lm_head.SCB";
                           }),
            t.end());
  });
  expect_load_error(dir, {"lm_head", "SCB"});
  fs::remove_all(dir);
  // a GPTQModel config that says its head is GPTQ-quantized
  const auto gdir = temp_dir("gptq_head");
  load::save_hf_dir(loaded(m), gdir, at::kFloat);
  const auto cfg_path = (fs::path(gdir) / "config.json").string();
  auto cfg = read_json(cfg_path);
  cfg["quantization_config"]["lm_head"] = true;
  io::write_file_atomic(cfg_path, cfg.dump(2));
  expect_load_error(gdir, {"lm_head: true", "int8 + SCB"});
  fs::remove_all(gdir);
  // an int8 head with an outlier threshold has no place next to GPTQ Linears
  auto bad = quantize::quantize_lm_head(
      *quantized(*fixtures::tiny_model(fixtures::tiny_config()), "rtn"), 6.0);
  EXPECT_THROW(load::save_hf_dir(loaded(bad), temp_dir("bad"), at::kFloat), Error);
  // and a head quantized twice is refused
  EXPECT_THROW(quantize::quantize_lm_head(*m, 0.0), Error);
}

}  // namespace
