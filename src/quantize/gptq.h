// GPTQ (Frantar et al., 2022): quantize a weight column by column, spreading each column's
// rounding error over the columns not yet quantized through the inverse Hessian of the layer's
// inputs, H = 2/N * sum x x^T. Lazy batch updates (blocks of 128 columns), optional act-order
// (columns in decreasing diag(H)), group-wise scales (static groups: computed from the original
// weight before any update), dampening raised and retried when the Cholesky factorisation fails.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "quant/intq.h"

namespace sllm::quantize {

struct GptqOptions {
  int bits = 4;
  int64_t group_size = 128;  // <= 0: one group per row
  bool sym = true;
  bool act_order = false;  // desc_act
  bool static_groups = false;
  double damp = 0.01;   // fraction of the mean diagonal added to H
  int64_t block = 128;  // lazy-update block width
};

// Accumulates H = 2/N * sum x x^T over calls (x [..., in], any float dtype), in fp64-stable order.
class Hessian {
 public:
  explicit Hessian(int64_t in);
  void add(const at::Tensor& x);
  const at::Tensor& matrix() const { return h_; }  // fp32 [in, in]
  int64_t samples() const { return n_; }

 private:
  at::Tensor h_;
  int64_t n_ = 0;
};

// w: fp32 [out, in] (not modified). Returns the quantized weight (g_idx set when act_order
// without static groups makes the column groups non-contiguous) and, in *loss, the sum of the
// per-column GPTQ losses (w - q)^2 / d^2 / 2.
quant::IntQWeight gptq_quantize(const at::Tensor& w, const at::Tensor& h, const GptqOptions& o,
                                double* loss = nullptr);

}  // namespace sllm::quantize
