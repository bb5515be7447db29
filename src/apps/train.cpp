// sllm sft / sllm qlora-train: one recipe, two defaults. QLoRA is LoRA over a base whose decoder
// Linears were quantized to NF4 while loading; sft is LoRA over the dense base, or full
// fine-tuning with `lora: null`.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <filesystem>

#include "apps/apps.h"
#include "apps/common.h"
#include "apps/task_eval.h"
#include "apps/train_app.h"
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

using nlohmann::json;

const options::Group<data::DatasetOptions>& data_group() {
  using G = options::Group<data::DatasetOptions>;
  using D = data::DatasetOptions;
  static const G g{
      G::plain({"data.train", nullptr, "training data (JSONL: text, prompt/completion or messages)",
                "--data"}),
      G::plain({"data.eval", nullptr, "evaluation data (JSONL, same formats)", "--eval-data"}),
      G::plain({"data.eval_fraction", 0.0,
                "without data.eval: fraction of the training data held out for evaluation"}),
      G::member({"data.format", "auto", "auto | text | prompt_completion | messages"}, &D::format),
      G::member({"data.max_seq_length", 1024, "tokens per example (longer ones are truncated)"},
                &D::max_seq_length),
      G::member({"data.completion_only", true, "loss on the completion only (false: every token)"},
                &D::completion_only),
      G::member({"data.packing", false, "concatenate examples into rows of max_seq_length"},
                &D::packing),
      // Needs the tokenizer ("auto": whether the model has a template): set by dataset_options.
      G::plain({"data.chat_template", "auto",
                "auto | true | false: wrap prompt/completion prompts in the chat template"}),
      G::member({"data.system", "", "system prompt of chat-wrapped prompts (\"\": the template's)"},
                &D::system),
      G::member({"data.response_template", "### Response:",
                 "text examples with completion_only: the loss starts after this marker"},
                &D::response_template),
      G::member({"data.skip_bad_lines", false, "skip (and count) malformed JSONL lines",
                 "--skip-bad-lines"},
                &D::skip_bad_lines),
  };
  return g;
}

const options::Group<train::TrainOptions>& train_group() {
  using G = options::Group<train::TrainOptions>;
  using T = train::TrainOptions;
  static const G g{
      G::with<int64_t>({"seed", 42, "random seed: LoRA init, data order, eval split"},
                       [](T& o, int64_t v) { o.seed = static_cast<uint64_t>(v); }),
      G::member({"train.epochs", 1, "passes over the training data", "--epochs"}, &T::epochs),
      G::member({"train.max_steps", -1, "optimizer steps (overrides train.epochs)", "--max-steps"},
                &T::max_steps),
      G::member({"train.batch_size", 2, "examples per micro-batch", "--batch-size"},
                &T::batch_size),
      G::member({"train.grad_accum", 8, "micro-batches per optimizer step", "--grad-accum"},
                &T::grad_accum),
      G::member({"train.lr", 2e-4, "peak learning rate", "--lr"}, &T::lr),
      G::member({"train.weight_decay", 0.0, "AdamW weight decay"}, &T::weight_decay),
      G::member({"train.beta1", 0.9, "AdamW beta1"}, &T::beta1),
      G::member({"train.beta2", 0.999, "AdamW beta2"}, &T::beta2),
      G::member({"train.eps", 1e-8, "AdamW epsilon"}, &T::eps),
      G::member({"train.scheduler", "cosine", "learning-rate schedule: constant, linear or cosine"},
                &T::scheduler),
      G::member({"train.warmup_ratio", 0.03, "warmup steps as a fraction of all steps"},
                &T::warmup_ratio),
      G::member({"train.warmup_steps", -1, "warmup steps (>= 0 overrides warmup_ratio)"},
                &T::warmup_steps),
      G::member({"train.max_grad_norm", 1.0, "clip the gradient norm to this"}, &T::max_grad_norm),
      G::member({"train.grad_checkpointing", false,
                 "recompute activations in the backward pass (less memory, slower)"},
                &T::grad_checkpointing),
      G::member({"train.log_every", 10, "log every N optimizer steps"}, &T::log_every),
      G::member({"train.save_every", 200, "checkpoint every N optimizer steps"}, &T::save_every),
      G::member({"train.eval_every", 0, "eval loss every N steps (0: only at the end)"},
                &T::eval_every),
      G::member({"train.save_total_limit", 2, "checkpoints kept"}, &T::save_total_limit),
      // "latest" or a directory; resolved against the run directory by run_training.
      G::plain({"train.resume", nullptr, "continue from a checkpoint: latest, or a directory",
                "--resume"}),
  };
  return g;
}

data::DatasetOptions dataset_options(const json& cfg, const tok::Tokenizer& t) {
  auto o = data_group().fill(cfg);
  o.chat_template = use_chat_template(t, cfg["data"]["chat_template"]);
  SLLM_CHECK(o.max_seq_length >= 8, "data.max_seq_length must be at least 8 (got {})",
             o.max_seq_length);
  return o;
}

train::TrainOptions train_options(const json& cfg) {
  const auto o = train_group().fill(cfg);
  // The trainer checks these too; here they fail before the slow model load.
  (void)train::lr_at(o.scheduler, 1, 0, 0, 1);
  SLLM_CHECK(o.lr > 0, "train.lr must be positive (got {})", o.lr);
  SLLM_CHECK(o.batch_size > 0, "train.batch_size must be at least 1 (got {})", o.batch_size);
  SLLM_CHECK(o.grad_accum > 0, "train.grad_accum must be at least 1 (got {})", o.grad_accum);
  return o;
}

}  // namespace

options::Table train_options_table(const std::string& command, bool qlora) {
  return options::join(
      {model_group().table(),
       {{"run_name", command, "run name", "--name"},
        {"output_dir", "runs", "directory of runs (the run goes to <out>/<name>)", "--out"}},
       data_group().table(),
       train_group().table(),
       quant_group(qlora).table(),
       {{"lora.r", 16, "LoRA rank (`lora: null` instead: full fine-tuning)"},
        {"lora.alpha", 32.0, "LoRA scale numerator: scale = alpha / r"},
        {"lora.dropout", 0.05, "dropout on the adapters' input"},
        {"lora.target_modules",
         {"q_proj", "k_proj", "v_proj", "o_proj"},
         "decoder Linears that get adapters"},
        {"lora.rslora", false, "rank-stabilized scale alpha / sqrt(r)"},
        {"task_eval.file", nullptr, "task file scored before and after training", "--task-eval"},
        {"task_eval.limit", 0, "score only the first N items (0: all)"},
        {"task_eval.max_new_tokens", TaskEvalSettings{}.max_new_tokens, "answer length limit"},
        {"task_eval.max_seqs", TaskEvalSettings{}.max_seqs, "answers decoded together"},
        {"task_eval.before", true, "also score the base model before training"}}});
}

int run_training(const nlohmann::json& cfg, const TrainRecipe& recipe) {
  const bool qlora = recipe.qlora;
  const std::string& cmd = recipe.command;
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
  auto lm = recipe.load_model ? recipe.load_model(run_dir) : [&] {
    const auto threads = config::get<int64_t>(cfg, "threads");
    if (threads > 0) at::set_num_threads(static_cast<int>(threads));
    auto o = quant_group(qlora).fill(cfg, model_group().fill(cfg));
    o.dequantize = true;  // a GGUF base trains on dense (or NF4) weights, as it always did
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
  TaskEvalSettings task_settings;
  task_settings.prompt = dopt;
  task_settings.max_new_tokens = config::get<int64_t>(cfg, "task_eval.max_new_tokens");
  task_settings.max_seqs = config::get<int64_t>(cfg, "task_eval.max_seqs");
  std::vector<eval::TaskItem> task_items;
  std::optional<TaskEvalRun> before, after;
  const bool task = cfg["task_eval"]["file"].is_string();
  if (task) {
    task_items = eval::load_task_file(cfg["task_eval"]["file"].get<std::string>(),
                                      config::get<int64_t>(cfg, "task_eval.limit"));
  }
  auto task_eval = [&](std::shared_ptr<const model::LlamaModel> m, const std::string& label) {
    auto r = run_task_eval(m, tok, task_items, task_settings, label);
    log::info("{}: exact match {:.1f}% ({}/{}), field match {:.1f}% in {:.0f} s", label,
              r.summary.exact_match, r.summary.exact, r.summary.n, r.summary.field_match,
              r.seconds);
    return r;
  };
  if (task && resume.empty() && config::get<bool>(cfg, "task_eval.before")) {
    before = task_eval(base, "task eval (base)");
    io::write_file_atomic((fs::path(run_dir) / "task_eval_base.md").string(),
                          render_task_report("Task evaluation: base model", *before));
    write_predictions((fs::path(run_dir) / "task_eval_base.jsonl").string(), *before);
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
  for (const auto& [k, v] : recipe.fingerprint.items()) topt.fingerprint[k] = v;
  const std::string model_path = recipe.load_model ? lm.path : cfg["model"].get<std::string>();
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
  if (recipe.prepare) recipe.prepare(trainer);
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
    io::write_file_atomic((fs::path(run_dir) / "task_eval_tuned.md").string(),
                          render_task_report("Task evaluation: tuned model", *after));
    write_predictions((fs::path(run_dir) / "task_eval_tuned.jsonl").string(), *after);
  }
  ReportInputs ri{cmd, cfg, summary, train_set.stats, res, before, after, out_dir};
  write_train_report(run_dir, ri);
  std::cout << fmt::format(
      "{} done: {} steps, {:.0f} tokens/s, {:.0f} s, peak RSS {}\n  weights: {}\n  report:  {}\n",
      cmd, res.steps, res.tokens_per_s, res.train_seconds, memory::format_bytes(res.peak_rss),
      out_dir, (fs::path(run_dir) / "report.md").string());
  if (before && after)
    std::cout << fmt::format("  task exact match: base {:.1f}% -> tuned {:.1f}%\n  ({})\n",
                             before->summary.exact_match, after->summary.exact_match,
                             after->settings);
  return 0;
}

options::Table sft_options() { return train_options_table("sft", false); }
options::Table qlora_options() { return train_options_table("qlora", true); }
int run_sft(const nlohmann::json& cfg) { return run_training(cfg, TrainRecipe("sft")); }
int run_qlora(const nlohmann::json& cfg) {
  return run_training(cfg, TrainRecipe("qlora-train", true));
}

}  // namespace sllm::apps
