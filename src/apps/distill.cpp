// sllm distill: a smaller student learns from a frozen teacher. Logit KD: the trainer's loss
// becomes (1 - kd_ratio) * CE + kd_ratio * KD against the teacher's next-token distribution,
// computed per micro-batch under no-grad. Sequence-level KD: `--generate` has the teacher answer
// prompts and writes a JSONL the student then trains on. Everything else (data, LoRA or full
// training, checkpoints, resume, Ctrl-C, report) is the fine-tuning recipe.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "apps/apps.h"
#include "apps/common.h"
#include "apps/distill_student.h"
#include "apps/task_eval.h"
#include "apps/train_app.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "io/atomic_write.h"
#include "lora/lora.h"
#include "train/kd_loss.h"

namespace fs = std::filesystem;

namespace sllm::apps {
namespace {

using nlohmann::json;

options::Table distill_table() {
  return {
      {"teacher.adapter", nullptr, "LoRA adapter (PEFT layout) applied to the teacher (`model`)"},
      {"teacher.quant", "none", "teacher's decoder Linears: none (dense) or nf4 (4-bit, frozen)"},
      {"student.model", nullptr,
       "student model sharing the teacher's tokenizer (null: cut it out of the teacher)"},
      {"student.init.every_k", 2, "student from the teacher: keep layers 0, k, 2k, ..."},
      {"student.init.layers", json::array(),
       "student from the teacher: these layers (overrides every_k)"},
      {"student.init.intermediate_size", 0,
       "student from the teacher: narrower MLP, units by weight-norm importance (0: same width)"},
      {"loss.kd_ratio", 0.5, "loss = (1 - kd_ratio) * CE + kd_ratio * KD (0: CE only, no teacher)"},
      {"loss.kind", "forward_kl", "forward_kl, reverse_kl or jsd"},
      {"loss.temperature", 1.0,
       "softmax temperature of both models (the KD part is scaled by T^2)"},
      {"loss.top_k", 0, "keep the teacher's top-k tokens per position plus a rest bucket (0: all)"},
      {"generate.enabled", false,
       "sequence-level KD: the teacher answers generate.prompts greedily into --out (a JSONL)",
       "--generate"},
      {"generate.prompts", nullptr, "JSONL of {\"prompt\": ...} lines", "--prompts"},
      {"generate.max_new_tokens", 256, "answer length limit"},
      {"generate.max_seqs", 16, "answers decoded together"},
  };
}

train::KdOptions kd_options(const json& cfg) {
  train::KdOptions o;
  o.kind = config::get<std::string>(cfg, "loss.kind");
  o.temperature = config::get<double>(cfg, "loss.temperature");
  o.top_k = config::get<int64_t>(cfg, "loss.top_k");
  train::validate(o);
  const double r = config::get<double>(cfg, "loss.kd_ratio");
  SLLM_CHECK(r >= 0 && r <= 1, "loss.kd_ratio must be between 0 and 1 (got {})", r);
  return o;
}

// The teacher as configured: `model` (+ teacher.adapter), dense or NF4.
load::LoadedModel load_teacher(const json& cfg, bool dense) {
  SLLM_CHECK(cfg["model"].is_string(),
             "no teacher given: pass --model <file.gguf | hf-directory> (the teacher)");
  const auto threads = config::get<int64_t>(cfg, "threads");
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  auto o = model_group().fill(cfg);
  const auto q = config::get<std::string>(cfg, "teacher.quant");
  SLLM_CHECK(q == "none" || q == "nf4", "teacher.quant must be none or nf4 (got '{}')", q);
  if (!dense && q == "nf4") o.quantize = "nf4";
  if (dense) o.dequantize = true;  // a student is cut from dense weights, never GGUF blocks
  auto m = load::load_model(cfg["model"].get<std::string>(), o);
  log::info("teacher {} ({} layers{})", m.display_name, m.model->config().num_layers,
            o.quantize.empty() ? "" : ", NF4");
  if (cfg["teacher"]["adapter"].is_string() && !dense)
    m.model = lora::load_peft(*m.model, cfg["teacher"]["adapter"].get<std::string>());
  return m;
}

std::vector<int64_t> layer_list(const json& cfg, int64_t n) {
  const auto& list = cfg["student"]["init"]["layers"];
  return student_layers(list.empty() ? json{{"every_k", cfg["student"]["init"]["every_k"]}} : list,
                        n);
}

// The student: student.model, or cut out of the (dense, adapter-free) teacher and written to
// <run>/student-init so that every sllm command, transformers, and an adapter can name it.
load::LoadedModel load_student(const json& cfg, const std::string& run_dir,
                               const load::LoadedModel& teacher) {
  if (cfg["student"]["model"].is_string()) {
    const auto path = cfg["student"]["model"].get<std::string>();
    auto o = model_group().fill(cfg);
    o.dequantize = true;  // the student trains: dense (or quantized for LoRA), not GGUF blocks
    const auto q = config::get<std::string>(cfg, "quant.type");
    if (q != "none") o.quantize = q;
    auto s = load::load_model(path, o);
    check_same_vocabulary(*teacher.tokenizer, teacher.model->config(),
                          cfg["model"].get<std::string>(), *s.tokenizer, s.model->config(), path);
    return s;
  }
  const auto dir = (fs::path(run_dir) / "student-init").string();
  if (!fs::exists(fs::path(dir) / "config.json")) {
    // Cut from the base weights: reload dense when the teacher is NF4, GGUF blocks run as
    // stored, or carries an adapter.
    const bool plain = config::get<std::string>(cfg, "teacher.quant") == "none" &&
                       !cfg["teacher"]["adapter"].is_string() && teacher.format != "gguf";
    auto dense = plain ? teacher : load_teacher(cfg, /*dense=*/true);
    const auto layers = layer_list(cfg, dense.model->config().num_layers);
    auto s = dense;
    s.model = student_from_teacher(*dense.model, layers,
                                   config::get<int64_t>(cfg, "student.init.intermediate_size"));
    load::save_hf_dir(s, dir, at::kFloat);
    log::info("student: {} of {} layers, intermediate size {}, written to {}", layers.size(),
              dense.model->config().num_layers, s.model->config().intermediate_size, dir);
  }
  auto o = model_group().fill(cfg);
  return load::load_model(dir, o);
}

std::vector<eval::TaskItem> read_prompts(const std::string& path) {
  std::ifstream in(path);
  SLLM_CHECK(in.good(), "cannot read prompts file {}", path);
  std::vector<eval::TaskItem> items;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      SLLM_FAIL("{}:{}: invalid JSON ({})", path, n, e.what());
    }
    SLLM_CHECK(j.is_object() && j.contains("prompt") && j["prompt"].is_string() &&
                   !j["prompt"].get<std::string>().empty(),
               "{}:{}: expected {{\"prompt\": \"non-empty text\"}}", path, n);
    items.push_back({j["prompt"].get<std::string>(), "", j.value("task", std::string()), n});
  }
  SLLM_CHECK(!items.empty(), "{}: no prompts", path);
  return items;
}

int run_generate_answers(const json& cfg) {
  SLLM_CHECK(cfg["generate"]["prompts"].is_string(),
             "--generate needs --prompts FILE.jsonl (the prompts the teacher answers)");
  const auto out = config::get<std::string>(cfg, "output_dir");
  SLLM_CHECK(fs::path(out).extension() == ".jsonl",
             "--generate writes the teacher's answers to --out FILE.jsonl (got '{}')", out);
  const auto items = read_prompts(cfg["generate"]["prompts"].get<std::string>());
  auto t = load_teacher(cfg, false);
  TaskEvalSettings s;
  s.prompt.chat_template = use_chat_template(*t.tokenizer, cfg["data"]["chat_template"]);
  s.prompt.system = config::get<std::string>(cfg, "data.system");
  s.max_new_tokens = config::get<int64_t>(cfg, "generate.max_new_tokens");
  s.max_seqs = config::get<int64_t>(cfg, "generate.max_seqs");
  at::NoGradGuard no_grad;
  auto r = run_task_eval(t.model, t.tokenizer, items, s, "teacher answers");
  std::string text;
  for (const auto& res : r.results) {
    json j = {{"prompt", res.item.prompt}, {"completion", res.got}};
    if (!res.item.task.empty()) j["task"] = res.item.task;
    text += j.dump() + "\n";
  }
  if (fs::path(out).has_parent_path()) fs::create_directories(fs::path(out).parent_path());
  io::write_file_atomic(out, text);
  std::cout << fmt::format("distill --generate: {} teacher answers written to {}\n",
                           r.results.size(), out);
  return 0;
}

}  // namespace

options::Table distill_options() {
  return options::join({train_options_table("distill", false), distill_table()});
}

int run_distill(const json& cfg) {
  if (config::get<bool>(cfg, "generate.enabled")) return run_generate_answers(cfg);
  const auto kd = kd_options(cfg);
  const double ratio = config::get<double>(cfg, "loss.kd_ratio");
  if (!cfg["student"]["model"].is_string() && cfg["student"]["init"]["layers"].is_array())
    (void)layer_list(cfg, 1 << 20);  // shape errors in the list before the slow load
  auto teacher = std::make_shared<std::shared_ptr<const model::LlamaModel>>();
  TrainRecipe r("distill");
  r.fingerprint = {{"teacher", cfg["teacher"]}, {"student", cfg["student"]}, {"loss", cfg["loss"]}};
  r.load_model = [&cfg, teacher, ratio](const std::string& run_dir) {
    auto t = load_teacher(cfg, false);
    auto s = load_student(cfg, run_dir, t);
    if (ratio > 0) *teacher = t.model;  // CE only: the teacher is not needed past the init
    return s;
  };
  r.prepare = [teacher, kd, ratio](train::Trainer& tr) {
    if (!*teacher) return;
    auto t = *teacher;
    tr.set_distill({[t, kd](const at::Tensor& ids, const at::Tensor& rows) {
                      at::NoGradGuard no_grad;
                      model::TrainingScope frozen(false);  // no adapter dropout in the teacher
                      auto h = t->hidden_full(ids);
                      auto logits = t->logits(h.reshape({-1, h.size(-1)}).index_select(0, rows));
                      return train::teacher_targets(logits, kd);
                    },
                    kd, ratio});
  };
  return run_training(cfg, r);
}

}  // namespace sllm::apps
