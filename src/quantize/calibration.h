// Calibration data for GPTQ / AWQ: token windows cut from a text file or a JSONL dataset.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "tokenizer/tokenizer.h"

namespace sllm::quantize {

struct CalibOptions {
  int64_t samples = 32;  // windows
  int64_t seqlen = 256;  // tokens per window
  uint64_t seed = 0;     // which windows, when the text holds more than needed
};

// ids [samples, seqlen] int64. The file is tokenized as one stream (a .jsonl file: each record's
// text, or prompt + completion, or messages rendered through the chat template, one after the
// other); the windows are non-overlapping, chosen at random (seeded) among all that fit, so a text
// must hold at least samples * seqlen tokens -- otherwise a clear error says how many it has and
// how many are needed.
at::Tensor load_calibration(const std::string& path, const tok::Tokenizer& t,
                            const CalibOptions& o);

}  // namespace sllm::quantize
