// The fused CPU autograd functions (rms_norm, rope, silu_mul) against the composite references:
// same outputs, same gradients.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "ops/ops.h"

using namespace sllm;

namespace {

void expect_close(const at::Tensor& a, const at::Tensor& b, double tol, const char* what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  EXPECT_TRUE(at::allclose(a, b, tol, tol)) << what << ": " << (a - b).abs().max().item<double>();
}

}  // namespace

TEST(FusedAutograd, RmsNormGradients) {
  at::manual_seed(1);
  auto x = at::randn({3, 5, 64}).requires_grad_(true);
  auto w = (1 + 0.1 * at::randn({64})).requires_grad_(true);
  auto dy = at::randn({3, 5, 64});
  auto y = ops::rms_norm(x, w, 1e-5);
  y.backward(dy);
  auto gx = x.grad().clone(), gw = w.grad().clone();
  x.mutable_grad() = at::Tensor();
  w.mutable_grad() = at::Tensor();
  auto yr = ops::ref::rms_norm(x, w, 1e-5);
  yr.backward(dy);
  expect_close(y, yr, 1e-6, "output");
  expect_close(gx, x.grad(), 1e-5, "dx");
  expect_close(gw, w.grad(), 1e-4, "dw");
}

TEST(FusedAutograd, RmsNormFrozenWeight) {
  at::manual_seed(2);
  auto x = at::randn({7, 48}).requires_grad_(true);
  auto w = 1 + 0.1 * at::randn({48});
  auto dy = at::randn({7, 48});
  ops::rms_norm(x, w, 1e-6).backward(dy);
  auto gx = x.grad().clone();
  x.mutable_grad() = at::Tensor();
  ops::ref::rms_norm(x, w, 1e-6).backward(dy);
  expect_close(gx, x.grad(), 1e-5, "dx");
}

TEST(FusedAutograd, RopeGradientsThroughANarrowedView) {
  at::manual_seed(3);
  auto qkv = at::randn({6, 5, 16}).requires_grad_(true);
  auto freqs = at::randn({6, 8});
  auto cos = freqs.cos(), sin = freqs.sin();
  auto dy = at::randn({6, 3, 16});
  auto y = ops::rope(qkv.narrow(1, 1, 3), cos, sin);
  y.backward(dy);
  auto g = qkv.grad().clone();
  qkv.mutable_grad() = at::Tensor();
  auto yr = ops::ref::rope(qkv.narrow(1, 1, 3), cos, sin);
  yr.backward(dy);
  expect_close(y, yr, 1e-6, "output");
  expect_close(g, qkv.grad(), 1e-6, "dx");
}

TEST(FusedAutograd, SiluMulGradients) {
  at::manual_seed(4);
  auto gu = (3 * at::randn({2, 9, 2 * 40})).requires_grad_(true);
  auto dy = at::randn({2, 9, 40});
  auto y = ops::silu_mul(gu);
  y.backward(dy);
  auto g = gu.grad().clone();
  gu.mutable_grad() = at::Tensor();
  auto yr = ops::ref::silu_mul(gu);
  yr.backward(dy);
  expect_close(y, yr, 1e-6, "output");
  expect_close(g, gu.grad(), 1e-5, "dgu");
}
