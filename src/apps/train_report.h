// runs/<name>/report.md (+ loss.svg) and the summary line of train_log.jsonl for a training run.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "apps/task_eval.h"
#include "data/jsonl_dataset.h"
#include "train/trainer.h"

namespace sllm::apps {

struct ReportInputs {
  std::string command;
  nlohmann::json config;
  std::string trainable_summary;
  data::DatasetStats data;
  train::TrainResult result;
  std::optional<TaskEvalRun> before, after;
  std::string weights_dir;
};

void write_train_report(const std::string& run_dir, const ReportInputs& r);

}  // namespace sllm::apps
