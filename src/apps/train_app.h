// The fine-tuning recipe shared by `sllm sft`, `sllm qlora-train` and `sllm distill`: options,
// data, LoRA or full training, task scores before/after, checkpoints, resume and the report.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <utility>

#include "core/options.h"
#include "load/loader.h"
#include "train/trainer.h"

namespace sllm::apps {

struct TrainRecipe {
  explicit TrainRecipe(std::string cmd, bool q = false) : command(std::move(cmd)), qlora(q) {}
  std::string command;  // sft | qlora-train | distill: logs, report and errors
  bool qlora = false;   // quant.type defaults to nf4 and must be 4-bit
  // Loads the model to train (default: `model` with quant.*); its `path` is the base an adapter
  // names. Called after the run directory exists.
  std::function<load::LoadedModel(const std::string& run_dir)> load_model;
  // Called with the trainer before it runs (distillation installs its teacher here).
  std::function<void(train::Trainer&)> prepare;
  nlohmann::json fingerprint = nlohmann::json::object();  // more keys a resume must match
};

// The options of a training command; run_name defaults to `command`.
options::Table train_options_table(const std::string& command, bool qlora);
int run_training(const nlohmann::json& cfg, const TrainRecipe& recipe);

}  // namespace sllm::apps
