// sllm quantize's engine: turns a dense model into one whose decoder Linears are quantized with
// RTN, LLM.int8(), GPTQ or AWQ. Calibrated methods go layer by layer: only one layer's inputs
// (calibration tokens x hidden) and one layer's working copy are alive at a time.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>

#include "model/llama.h"
#include "quantize/awq.h"
#include "quantize/gptq.h"

namespace sllm::quantize {

// One Linear as GPTQ quantized it inside quantize_model: the weight and Hessian it was given and
// the result. For checks against an independent implementation (tests/reference/).
struct GptqStage {
  int64_t layer = 0;
  int stage = 0;       // index in DecoderLayer::linears(): qkv, o, gate_up, down
  at::Tensor weight;   // fp32 [out, in], as GPTQ received it
  at::Tensor hessian;  // fp32 [in, in], 2/N sum x x^T over the stage's calibration inputs
  const quant::IntQWeight* result = nullptr;
};
using GptqObserver = std::function<void(const GptqStage&)>;

struct QuantizeOptions {
  std::string method = "rtn";  // rtn | int8 | gptq | awq
  int bits = 4;
  int64_t group_size = 128;  // <= 0: per output channel (rtn, gptq)
  bool sym = false;          // rtn (gptq: gptq.sym; awq is always asymmetric)
  GptqOptions gptq;
  bool true_sequential = true;  // gptq: re-collect inputs after each sub-block is quantized
  AwqOptions awq;
  double int8_threshold = 6.0;
  // gptq / awq: quantize only the first max_layers decoder layers (-1: all); the rest stay dense.
  int64_t max_layers = -1;
  GptqObserver gptq_observer;  // called after each GPTQ stage, when set
};

// Which methods need calibration tokens.
bool needs_calibration(const std::string& method);
// Checks the options against the model before any work: bits the method supports, a group size
// that divides every Linear's input width. Throws sllm::Error with what to change.
void check_options(const model::LlamaModel& m, const QuantizeOptions& o);

// m must have dense decoder Linears (an already-quantized model is an error). calib: ids
// [samples, seqlen] for gptq / awq. Returns the quantized model on m's device.
std::shared_ptr<const model::LlamaModel> quantize_model(const model::LlamaModel& m,
                                                        const QuantizeOptions& o,
                                                        const at::Tensor& calib);

}  // namespace sllm::quantize
