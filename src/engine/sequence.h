// The engine's state of one request (private to src/engine).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/timer.h"
#include "engine/engine.h"

namespace sllm::engine {

struct Engine::Sequence {
  SeqState st;  // the scheduler's part: id, KV sequence, tokens, computed
  Request req;
  Sampler sampler;
  int64_t prompt_len = 0, max_new = 0;
  std::unique_ptr<tok::StreamDecoder> decoder;
  std::string text;
  size_t emitted = 0;  // bytes of text passed to on_text
  size_t max_stop_len = 0;
  Timer timer;  // from admission
  double first_token_ms = -1;
  std::vector<int32_t> generated;
  bool cancelled = false;  // cancel asked for during a step
  bool finishing = false;

  explicit Sequence(Request r) : req(std::move(r)), sampler(req.params) {}
};

}  // namespace sllm::engine
