// sllm sft / sllm qlora-train: one recipe, two defaults. QLoRA is LoRA over a base whose decoder
// Linears were quantized to NF4 while loading; sft is LoRA over the dense base, or full
// fine-tuning with `lora: null`.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <filesystem>

#include "apps/apps.h"
#include "apps/common.h"
#include "apps/task_eval.h"
#include "apps/train_report.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/timer.h"
#include "io/atomic_write.h"
#include "lora/lora.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace sllm::apps {
namespace {

nlohmann::json train_defaults(bool qlora) {
  auto d = model_defaults();
  d = merged(
      d, {{"run_name", qlora ? "qlora" : "sft"},
          {"output_dir", "runs"},
          {"seed", 42},
          {"data",
           {{"train", nullptr},
            {"eval", nullptr},
            {"eval_fraction", 0.0},
            {"format", "auto"},
            {"max_seq_length", 1024},
            {"completion_only", true},
            {"packing", false},
            {"chat_template", "auto"},
            {"system", ""},
            {"response_template", "### Response:"},
            {"skip_bad_lines", false}}},
          {"quant", {{"type", qlora ? "nf4" : "none"}, {"double_quant", true}, {"blocksize", 64}}},
          {"lora",
           {{"r", 16},
            {"alpha", 32.0},
            {"dropout", 0.05},
            {"target_modules", {"q_proj", "k_proj", "v_proj", "o_proj"}},
            {"rslora", false}}},
          {"train",
           {{"epochs", 1},
            {"max_steps", -1},
            {"batch_size", 2},
            {"grad_accum", 8},
            {"lr", 2e-4},
            {"weight_decay", 0.0},
            {"beta1", 0.9},
            {"beta2", 0.999},
            {"eps", 1e-8},
            {"scheduler", "cosine"},
            {"warmup_ratio", 0.03},
            {"warmup_steps", -1},
            {"max_grad_norm", 1.0},
            {"grad_checkpointing", false},
            {"log_every", 10},
            {"save_every", 200},
            {"eval_every", 0},
            {"save_total_limit", 2},
            {"resume", nullptr}}},
          {"task_eval",
           {{"file", nullptr},
            {"limit", 0},
            {"max_new_tokens", 128},
            {"max_seqs", 16},
            {"before", true}}}});
  return d;
}

data::DatasetOptions dataset_options(const nlohmann::json& cfg, const tok::Tokenizer& t) {
  data::DatasetOptions o;
  o.format = config::get<std::string>(cfg, "data.format");
  o.max_seq_length = config::get<int64_t>(cfg, "data.max_seq_length");
  o.completion_only = config::get<bool>(cfg, "data.completion_only");
  o.packing = config::get<bool>(cfg, "data.packing");
  o.skip_bad_lines = config::get<bool>(cfg, "data.skip_bad_lines");
  o.chat_template = use_chat_template(t, cfg["data"]["chat_template"]);
  o.system = config::get<std::string>(cfg, "data.system");
  o.response_template = config::get<std::string>(cfg, "data.response_template");
  SLLM_CHECK(o.max_seq_length >= 8, "data.max_seq_length must be at least 8 (got {})",
             o.max_seq_length);
  return o;
}

train::TrainOptions train_options(const nlohmann::json& cfg) {
  train::TrainOptions o;
  o.epochs = config::get<int64_t>(cfg, "train.epochs");
  o.max_steps = config::get<int64_t>(cfg, "train.max_steps");
  o.batch_size = config::get<int64_t>(cfg, "train.batch_size");
  o.grad_accum = config::get<int64_t>(cfg, "train.grad_accum");
  o.lr = config::get<double>(cfg, "train.lr");
  o.weight_decay = config::get<double>(cfg, "train.weight_decay");
  o.beta1 = config::get<double>(cfg, "train.beta1");
  o.beta2 = config::get<double>(cfg, "train.beta2");
  o.eps = config::get<double>(cfg, "train.eps");
  o.scheduler = config::get<std::string>(cfg, "train.scheduler");
  o.warmup_ratio = config::get<double>(cfg, "train.warmup_ratio");
  o.warmup_steps = config::get<int64_t>(cfg, "train.warmup_steps");
  o.max_grad_norm = config::get<double>(cfg, "train.max_grad_norm");
  o.grad_checkpointing = config::get<bool>(cfg, "train.grad_checkpointing");
  o.log_every = config::get<int64_t>(cfg, "train.log_every");
  o.save_every = config::get<int64_t>(cfg, "train.save_every");
  o.eval_every = config::get<int64_t>(cfg, "train.eval_every");
  o.save_total_limit = config::get<int64_t>(cfg, "train.save_total_limit");
  o.seed = static_cast<uint64_t>(config::get<int64_t>(cfg, "seed"));
  // The trainer checks these too; here they fail before the slow model load.
  (void)train::lr_at(o.scheduler, 1, 0, 0, 1);
  SLLM_CHECK(o.lr > 0, "train.lr must be positive (got {})", o.lr);
  SLLM_CHECK(o.batch_size > 0, "train.batch_size must be at least 1 (got {})", o.batch_size);
  SLLM_CHECK(o.grad_accum > 0, "train.grad_accum must be at least 1 (got {})", o.grad_accum);
  return o;
}

int run_training(const nlohmann::json& cfg, bool qlora) {
  const std::string cmd = qlora ? "qlora-train" : "sft";
  SLLM_CHECK(cfg["data"]["train"].is_string(),
             "no training data: pass --data FILE.jsonl (or data.train in the config)");
  (void)train_options(cfg);  // config errors before the slow model load
  SLLM_CHECK(cfg["adapter"].is_null(),
             "--adapter is for inference; to continue a training run use --resume");
  const bool use_lora = !cfg["lora"].is_null();
  const auto quant = config::get<std::string>(cfg, "quant.type");
  SLLM_CHECK(quant == "none" || quant == "nf4" || quant == "fp4",
             "quant.type must be none, nf4 or fp4 (got '{}')", quant);
  SLLM_CHECK(!qlora || quant != "none", "qlora-train needs a 4-bit base (quant.type nf4 or fp4)");
  SLLM_CHECK(use_lora || quant == "none",
             "full fine-tuning (lora: null) needs a dense base; set quant.type: none");
  std::optional<lora::LoraConfig> lcfg;
  if (use_lora) lcfg = lora::LoraConfig::from_json(cfg["lora"]);
  SLLM_CHECK(config::get<std::string>(cfg, "dtype") != "fp16",
             "fp16 training is not supported (4-bit + fp16 without loss scaling diverges); use "
             "fp32, or bf16 on a GPU");

  const auto run_dir = (fs::path(config::get<std::string>(cfg, "output_dir")) /
                        config::get<std::string>(cfg, "run_name"))
                           .string();
  std::string resume =
      cfg["train"]["resume"].is_null() ? "" : cfg["train"]["resume"].get<std::string>();
  if (resume == "true") resume = "latest";
  if (resume == "false") resume.clear();
  SLLM_CHECK(!resume.empty() || train::latest_checkpoint(run_dir).empty(),
             "{} already has checkpoints: pass --resume to continue that run, or choose another "
             "--name",
             run_dir);
  fs::create_directories(run_dir);

  // Model: quantized while loading for QLoRA (one module's fp32 copy alive at a time).
  auto lm = [&] {
    const auto threads = config::get<int64_t>(cfg, "threads");
    if (threads > 0) at::set_num_threads(static_cast<int>(threads));
    load::LoadOptions o;
    o.dtype = load::parse_dtype(config::get<std::string>(cfg, "dtype"));
    o.device = load::parse_device(config::get<std::string>(cfg, "device"));
    if (quant != "none") {
      o.quantize = quant;
      o.double_quant = config::get<bool>(cfg, "quant.double_quant");
      o.blocksize = config::get<int64_t>(cfg, "quant.blocksize");
    }
    SLLM_CHECK(cfg["model"].is_string(), "no model given: pass --model <file.gguf | hf-directory>");
    Timer t;
    auto m = load::load_model(cfg["model"].get<std::string>(), o);
    log::info("loaded {} ({}{}) in {:.1f} s", m.display_name, m.format,
              quant != "none" ? ", decoder Linears in " + quant : std::string(), t.seconds());
    return m;
  }();
  log::debug("after loading: peak RSS {}", memory::format_bytes(memory::peak_rss_bytes()));
  auto tok = lm.tokenizer;
  const auto tpl = tok::detect_chat_template(*tok);
  const auto dopt = dataset_options(cfg, *tok);

  // Data.
  auto train_set = data::load_jsonl(cfg["data"]["train"].get<std::string>(), *tok, tpl, dopt);
  data::Dataset eval_set;
  if (cfg["data"]["eval"].is_string()) {
    eval_set = data::load_jsonl(cfg["data"]["eval"].get<std::string>(), *tok, tpl, dopt);
  } else if (config::get<double>(cfg, "data.eval_fraction") > 0) {
    std::tie(train_set, eval_set) =
        data::split(train_set, config::get<double>(cfg, "data.eval_fraction"),
                    static_cast<uint64_t>(config::get<int64_t>(cfg, "seed")));
  }
  const auto& st = train_set.stats;
  log::info("data: {} examples ({} tokens, {} labelled) from {}; {} truncated to {} tokens{}",
            train_set.examples.size(), st.tokens, st.target_tokens, train_set.path, st.truncated,
            dopt.max_seq_length,
            st.skipped_bad ? fmt::format(", {} bad lines skipped", st.skipped_bad) : "");
  if (!eval_set.examples.empty()) log::info("eval: {} examples", eval_set.examples.size());
  auto train_examples =
      dopt.packing ? data::pack(train_set.examples, dopt.max_seq_length) : train_set.examples;

  // Trainable parameters.
  std::shared_ptr<const model::LlamaModel> base = lm.model;
  std::shared_ptr<const model::LlamaModel> model;
  std::vector<at::Tensor> params;
  if (use_lora) {
    auto m = lora::inject(*base, *lcfg, static_cast<uint64_t>(config::get<int64_t>(cfg, "seed")));
    params = m->lora_parameters();
    model = m;
  } else {
    params = base->dense_parameters();
    for (auto& p : params) p.requires_grad_(true);
    model = base;
  }
  int64_t trainable = 0;
  for (const auto& p : params) trainable += p.numel();
  const auto summary = lora::trainable_summary(trainable, model->num_parameters());
  log::info("{}", summary);

  // Task scores of the base model, before any training.
  data::DatasetOptions prompt_opt = dopt;
  std::vector<eval::TaskItem> task_items;
  std::optional<TaskEvalRun> before, after;
  const bool task = cfg["task_eval"]["file"].is_string();
  if (task) {
    task_items = eval::load_task_file(cfg["task_eval"]["file"].get<std::string>(),
                                      config::get<int64_t>(cfg, "task_eval.limit"));
  }
  auto task_eval = [&](std::shared_ptr<const model::LlamaModel> m, const std::string& label) {
    at::NoGradGuard no_grad;
    auto r = run_task_eval(m, tok, task_items, prompt_opt,
                           config::get<int64_t>(cfg, "task_eval.max_new_tokens"),
                           config::get<int64_t>(cfg, "task_eval.max_seqs"), label);
    log::info("{}: exact match {:.1f}% ({}/{}), field match {:.1f}% in {:.0f} s", label,
              r.summary.exact_match, r.summary.exact, r.summary.n, r.summary.field_match,
              r.seconds);
    return r;
  };
  if (task && resume.empty() && config::get<bool>(cfg, "task_eval.before")) {
    before = task_eval(base, "task eval (base)");
    io::write_file_atomic(
        (fs::path(run_dir) / "task_eval_base.md").string(),
        eval::render_report("Task evaluation: base model", before->summary, before->results));
  }

  // Train.
  auto topt = train_options(cfg);
  topt.run_dir = run_dir;
  topt.resume = resume;
  topt.pad_id = tok->pad_id >= 0 ? tok->pad_id : (tok->eos_id >= 0 ? tok->eos_id : 0);
  topt.fingerprint = {
      {"model", cfg["model"]}, {"data", cfg["data"]},           {"lora", cfg["lora"]},
      {"quant", cfg["quant"]}, {"batch_size", topt.batch_size}, {"grad_accum", topt.grad_accum},
      {"seed", cfg["seed"]}};
  const std::string model_path = cfg["model"].get<std::string>();
  train::SaveFn save = [&](const std::string& dir) {
    if (use_lora) {
      lora::save_peft(*model, *lcfg, (fs::path(dir) / "adapter").string(), model_path, true);
    } else {
      auto out = lm;
      out.model = model;
      load::save_hf_dir(out, (fs::path(dir) / "model").string(), model->dtype());
    }
  };
  train::Trainer trainer(model, params, std::move(train_examples), eval_set.examples, topt, save);
  log::info("{}: {} optimizer steps (batch {} x grad_accum {}), run dir {}", cmd,
            trainer.total_steps(), topt.batch_size, topt.grad_accum, run_dir);
  auto res = trainer.run();

  // Final weights next to the checkpoints.
  save(run_dir);
  const auto out_dir = (fs::path(run_dir) / (use_lora ? "adapter" : "model")).string();
  if (res.interrupted) {
    log::warn("stopped early; weights of step {} written to {}", res.steps, out_dir);
    return 130;
  }
  if (task) {
    after = task_eval(model, "task eval (tuned)");
    io::write_file_atomic(
        (fs::path(run_dir) / "task_eval_tuned.md").string(),
        eval::render_report("Task evaluation: tuned model", after->summary, after->results));
  }
  ReportInputs ri{cmd, cfg, summary, train_set.stats, res, before, after, out_dir};
  write_train_report(run_dir, ri);
  std::cout << fmt::format(
      "{} done: {} steps, {:.0f} tokens/s, {:.0f} s, peak RSS {}\n  weights: {}\n  report:  {}\n",
      cmd, res.steps, res.tokens_per_s, res.train_seconds, memory::format_bytes(res.peak_rss),
      out_dir, (fs::path(run_dir) / "report.md").string());
  if (before && after)
    std::cout << fmt::format("  task exact match: base {:.1f}% -> tuned {:.1f}%\n",
                             before->summary.exact_match, after->summary.exact_match);
  return 0;
}

}  // namespace

nlohmann::json sft_defaults() { return train_defaults(false); }
nlohmann::json qlora_defaults() { return train_defaults(true); }
int run_sft(const nlohmann::json& cfg) { return run_training(cfg, false); }
int run_qlora(const nlohmann::json& cfg) { return run_training(cfg, true); }

}  // namespace sllm::apps
