// Inside a worker process: the loaded model and the operations the driver asks for.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <vector>

#include "engine/engine.h"
#include "load/loader.h"

namespace sllm::apps::bench {

struct WorkerState {
  load::LoadedModel m;
  std::vector<std::vector<int32_t>> prompts;  // encoded once, the same ids every rep
  std::vector<int64_t> max_new_tokens;
  bool ignore_eos = false, chat = false;
  int64_t batch = 1;
  std::unique_ptr<engine::Engine> engine;  // kept between reps
  uint64_t weights_bytes = 0;              // what the model occupies in memory (estimate)
};

// Each takes the request and returns the reply's fields (quality.cpp, sweep.cpp).
nlohmann::json op_task(WorkerState& w, const nlohmann::json& req);
nlohmann::json op_ppl(WorkerState& w, const nlohmann::json& req);
nlohmann::json op_pp_tg(WorkerState& w, const nlohmann::json& req);
nlohmann::json op_sweep(WorkerState& w, const nlohmann::json& req);

// Bytes of a file, or of every file under a directory.
uint64_t disk_bytes(const std::string& path);

}  // namespace sllm::apps::bench
