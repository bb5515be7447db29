// Long jobs with one call each: fine-tuning and quantization. They run exactly what
// `sllm sft` / `sllm qlora-train` / `sllm quantize` run: the fields below cover the common
// settings, `config_file` and `overrides` ("train.lr=1e-4") reach every other key (see
// `sllm <command> --help` and configs/reference/). Precedence: defaults < config_file <
// overrides < the fields set here. Progress and logs go to stderr.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sllm {

struct TrainOptions {
  bool qlora = true;        // NF4 base + LoRA (false: `sllm sft`, LoRA or full fine-tuning)
  std::string config_file;  // YAML or JSON, optional
  std::vector<std::string> overrides;  // dotted key=value
  std::string model;                   // GGUF or HF directory ("" keeps the config's)
  std::string train_data;              // JSONL ("" keeps the config's)
  std::string output_dir;              // runs directory ("" keeps the config's)
  std::string run_name;
  int64_t max_steps = -1;  // -1 keeps the config's
};

// Trains and writes <output_dir>/<run_name>/ (adapter in the PEFT layout, logs, report).
// Returns that run directory.
std::string train(const TrainOptions& options);

struct QuantizeOptions {
  std::string method = "rtn";  // rtn | int8 | gptq | awq | nf4 | fp4
  std::string model;
  std::string out;  // output directory (must not exist)
  int bits = 0;     // 0: the method's default
  int group_size = 128;
  std::string calib;  // calibration text or JSONL (gptq, awq)
  std::string config_file;
  std::vector<std::string> overrides;
};

// Writes a Hugging Face directory with a quantization_config the ecosystem loads.
void quantize(const QuantizeOptions& options);

}  // namespace sllm
