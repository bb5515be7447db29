// train / quantize: the public face of the fine-tuning and quantization recipes. Options become
// the layers of the same config tree the CLI resolves, so both run the same validated recipe.
#include "sllm/jobs.h"

#include <filesystem>

#include "apps/apps.h"
#include "core/config.h"
#include "core/error.h"
#include "core/options.h"

namespace sllm {
namespace {

using nlohmann::json;

// defaults <- config_file <- overrides <- the struct's fields, as the CLI layers them.
json resolve(const json& defaults, const std::string& config_file,
             const std::vector<std::string>& overrides, const json& fields) {
  return config::resolve(defaults,
                         config::standard_layers(config_file, overrides, fields, "options"));
}

}  // namespace

std::string train(const TrainOptions& o) {
  json f = json::object();
  if (!o.model.empty()) f["model"] = o.model;
  if (!o.train_data.empty()) f["data"]["train"] = o.train_data;
  if (!o.output_dir.empty()) f["output_dir"] = o.output_dir;
  if (!o.run_name.empty()) f["run_name"] = o.run_name;
  if (o.max_steps >= 0) f["train"]["max_steps"] = o.max_steps;
  const json cfg = resolve(
      o.qlora ? options::defaults(apps::qlora_options()) : options::defaults(apps::sft_options()),
      o.config_file, o.overrides, f);
  const int rc = o.qlora ? apps::run_qlora(cfg) : apps::run_sft(cfg);
  SLLM_CHECK(rc == 0, "training ended with status {}", rc);
  return (std::filesystem::path(config::get<std::string>(cfg, "output_dir")) /
          config::get<std::string>(cfg, "run_name"))
      .string();
}

void quantize(const QuantizeOptions& o) {
  json f = {{"method", o.method}, {"group_size", o.group_size}, {"bits", o.bits}};
  if (!o.model.empty()) f["model"] = o.model;
  if (!o.out.empty()) f["out"] = o.out;
  if (!o.calib.empty()) f["calib"] = o.calib;
  const json cfg =
      resolve(options::defaults(apps::quantize_options()), o.config_file, o.overrides, f);
  const int rc = apps::run_quantize(cfg);
  SLLM_CHECK(rc == 0, "quantization ended with status {}", rc);
}

}  // namespace sllm
