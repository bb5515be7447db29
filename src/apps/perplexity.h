// The perplexity protocol every command shares (docs/eval.md), and the KL divergence against a
// reference model on the same windows (how quantization quality is reported).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace sllm::apps {

struct PplResult {
  double perplexity = 0, mean_nll = 0;
  int64_t tokens = 0, scored = 0, windows = 0;
  double seconds = 0;
  bool has_ref = false;
  double ref_perplexity = 0;
  double mean_kld = 0;       // mean over scored positions of KL(P_ref || P_model), nats
  double max_kld = 0;
  double same_top = 0;       // % of scored positions where both models' argmax agree
};

// BOS (when the model adds one) + the text's tokens; errors if fewer than 2.
std::vector<int32_t> ppl_tokens(const tok::Tokenizer& t, const std::string& text,
                                const std::string& where);

// Consecutive windows of ctx tokens (a last window of >= 2 tokens is kept); every token but a
// window's first is scored from the tokens before it in its window. With ref, the same windows
// run through ref too. label names the progress bar.
PplResult perplexity(const model::LlamaModel& m, const std::vector<int32_t>& ids, int64_t ctx,
                     const model::LlamaModel* ref = nullptr, const std::string& label = "perplexity");

}  // namespace sllm::apps
