#include "train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <fmt/format.h>

#include <malloc.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/progress.h"
#include "core/timer.h"
#include "io/atomic_dir.h"
#include "io/atomic_write.h"
#include "load/tensor_io.h"
#include "train/optim.h"

namespace fs = std::filesystem;

namespace sllm::train {
namespace {

std::atomic<int> g_interrupts{0};
extern "C" void on_sigint(int) {
  // First Ctrl-C: finish the step, checkpoint, stop. Second: the default action.
  if (g_interrupts.fetch_add(1) >= 1) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
}

// Fisher-Yates with mt19937_64: the same order on every platform and standard library.
std::vector<size_t> permutation(size_t n, uint64_t seed) {
  std::vector<size_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = i;
  std::mt19937_64 rng(seed);
  for (size_t i = n; i > 1; --i) std::swap(p[i - 1], p[rng() % i]);
  return p;
}

nlohmann::json point_json(const LogPoint& p) {
  nlohmann::json j = {{"step", p.step},
                      {"loss", p.loss},
                      {"lr", p.lr},
                      {"grad_norm", p.grad_norm},
                      {"tokens_per_s", p.tokens_per_s},
                      {"elapsed_s", p.elapsed_s},
                      {"peak_rss_mb", static_cast<double>(p.peak_rss) / (1024.0 * 1024.0)}};
  if (p.eval_loss >= 0) j["eval_loss"] = p.eval_loss;
  if (p.ce_loss >= 0) j["ce_loss"] = p.ce_loss;
  if (p.kd_loss >= 0) j["kd_loss"] = p.kd_loss;
  return j;
}

LogPoint point_from(const nlohmann::json& j) {
  LogPoint p;
  p.step = j.at("step").get<int64_t>();
  p.loss = j.at("loss").get<double>();
  p.lr = j.at("lr").get<double>();
  p.grad_norm = j.at("grad_norm").get<double>();
  p.tokens_per_s = j.at("tokens_per_s").get<double>();
  p.elapsed_s = j.at("elapsed_s").get<double>();
  p.peak_rss = static_cast<uint64_t>(j.at("peak_rss_mb").get<double>() * 1024 * 1024);
  p.eval_loss = j.value("eval_loss", -1.0);
  p.ce_loss = j.value("ce_loss", -1.0);
  p.kd_loss = j.value("kd_loss", -1.0);
  return p;
}

std::string step_dir_name(int64_t step) { return fmt::format("step-{:06d}", step); }

}  // namespace

std::string latest_checkpoint(const std::string& run_dir) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  std::string best;
  if (!fs::is_directory(dir)) return best;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    if (e.is_directory() && name.rfind("step-", 0) == 0 && name.find('.') == std::string::npos &&
        fs::exists(e.path() / "trainer_state.json") && name > fs::path(best).filename().string())
      best = e.path().string();
  }
  return best;
}

Trainer::Trainer(std::shared_ptr<const model::LlamaModel> model, std::vector<at::Tensor> params,
                 std::vector<data::Example> train, std::vector<data::Example> eval, TrainOptions o,
                 SaveFn save_weights)
    : model_(std::move(model)),
      params_(std::move(params)),
      train_(std::move(train)),
      eval_(std::move(eval)),
      o_(std::move(o)),
      save_weights_(std::move(save_weights)) {
  SLLM_CHECK(!train_.empty(), "no training examples");
  SLLM_CHECK(!params_.empty(), "nothing to train: no trainable parameters");
  SLLM_CHECK(o_.batch_size > 0, "train.batch_size must be at least 1 (got {})", o_.batch_size);
  SLLM_CHECK(o_.grad_accum > 0, "train.grad_accum must be at least 1 (got {})", o_.grad_accum);
  SLLM_CHECK(o_.lr > 0 && std::isfinite(o_.lr), "train.lr must be positive (got {})", o_.lr);
  SLLM_CHECK(o_.epochs > 0 || o_.max_steps > 0,
             "train.epochs must be at least 1 (or set train.max_steps)");
  micro_per_epoch_ = (static_cast<int64_t>(train_.size()) + o_.batch_size - 1) / o_.batch_size;
  steps_per_epoch_ = (micro_per_epoch_ + o_.grad_accum - 1) / o_.grad_accum;
  total_steps_ = o_.max_steps > 0 ? o_.max_steps : o_.epochs * steps_per_epoch_;
  warmup_ =
      o_.warmup_steps >= 0
          ? o_.warmup_steps
          : static_cast<int64_t>(std::ceil(o_.warmup_ratio * static_cast<double>(total_steps_)));
}

std::vector<std::vector<size_t>> Trainer::micro_batches_of_step(int64_t step) const {
  const int64_t epoch = step / steps_per_epoch_, local = step % steps_per_epoch_;
  const auto order = permutation(train_.size(), o_.seed + static_cast<uint64_t>(epoch));
  std::vector<std::vector<size_t>> out;
  for (int64_t mb = local * o_.grad_accum;
       mb < std::min(micro_per_epoch_, (local + 1) * o_.grad_accum); ++mb) {
    std::vector<size_t> idx;
    for (int64_t k = mb * o_.batch_size;
         k < std::min<int64_t>(static_cast<int64_t>(train_.size()), (mb + 1) * o_.batch_size); ++k)
      idx.push_back(order[k]);
    out.push_back(std::move(idx));
  }
  return out;
}

Trainer::Batch Trainer::collate(const std::vector<size_t>& idx,
                                const std::vector<data::Example>& ex) const {
  int64_t T = 0;
  for (auto i : idx) T = std::max<int64_t>(T, static_cast<int64_t>(ex[i].ids.size()));
  const int64_t B = static_cast<int64_t>(idx.size());
  Batch b;
  b.ids = at::full({B, T}, o_.pad_id, at::kLong);
  b.targets = at::full({B, T}, data::kIgnore, at::kLong);
  auto ids = b.ids.accessor<int64_t, 2>();
  auto tg = b.targets.accessor<int64_t, 2>();
  for (int64_t r = 0; r < B; ++r) {
    const auto& e = ex[idx[r]];
    const int64_t n = static_cast<int64_t>(e.ids.size());
    for (int64_t t = 0; t < n; ++t) ids[r][t] = e.ids[t];
    // Position t predicts token t+1: the label of t+1 is the target of t.
    for (int64_t t = 0; t + 1 < n; ++t) {
      tg[r][t] = e.labels[t + 1];
      if (e.labels[t + 1] != data::kIgnore) ++b.target_tokens;
    }
    b.tokens += n;
  }
  return b;
}

at::Tensor Trainer::loss_sum(const Batch& b) const {
  const auto dev = model_->device();
  auto h = model_->hidden_full(b.ids.to(dev), o_.grad_checkpointing);
  auto targets = b.targets.to(dev).reshape({-1});
  auto sel = targets.ne(data::kIgnore).nonzero().squeeze(1);
  // Project only labelled positions: the vocabulary matmul is the largest single one.
  auto logits = model_->logits(h.reshape({-1, h.size(-1)}).index_select(0, sel));
  return at::cross_entropy_loss(logits, targets.index_select(0, sel), {}, at::Reduction::Sum);
}

Trainer::Parts Trainer::loss_parts(const Batch& b) const {
  if (!distill_) {
    auto ce = loss_sum(b);
    return {ce, ce.item<double>(), 0.0};
  }
  const auto dev = model_->device();
  auto ids = b.ids.to(dev);
  auto targets = b.targets.to(dev).reshape({-1});
  auto sel = targets.ne(data::kIgnore).nonzero().squeeze(1);
  // The teacher first: its full-vocab logits are gone before the student's graph is built.
  const auto teacher = distill_->teacher(ids, sel);
  auto h = model_->hidden_full(ids, o_.grad_checkpointing);
  auto logits = model_->logits(h.reshape({-1, h.size(-1)}).index_select(0, sel));
  auto ce = at::cross_entropy_loss(logits, targets.index_select(0, sel), {}, at::Reduction::Sum);
  auto kd = kd_loss_sum(logits, teacher, distill_->kd);
  const double r = distill_->ratio;
  return {(1.0 - r) * ce + r * kd, ce.item<double>(), kd.item<double>()};
}

double Trainer::eval_loss(const std::vector<data::Example>& ex) const {
  at::NoGradGuard no_grad;
  model::TrainingScope eval_mode(false);
  double sum = 0;
  int64_t n = 0;
  for (size_t s = 0; s < ex.size(); s += o_.batch_size) {
    std::vector<size_t> idx;
    for (size_t k = s; k < std::min(ex.size(), s + o_.batch_size); ++k) idx.push_back(k);
    auto b = collate(idx, ex);
    if (b.target_tokens == 0) continue;
    sum += loss_sum(b).item<double>();
    n += b.target_tokens;
  }
  return n > 0 ? sum / static_cast<double>(n) : -1;
}

void Trainer::save_checkpoint(int64_t step, AdamW& opt, const std::vector<LogPoint>& log) {
  const fs::path root = fs::path(o_.run_dir) / "checkpoints";
  fs::create_directories(root);
  const std::string dir = (root / step_dir_name(step)).string();
  try {
    io::AtomicDir out(dir, /*replace=*/true);
    std::vector<std::pair<std::string, at::Tensor>> p;
    for (size_t i = 0; i < params_.size(); ++i)
      p.emplace_back("p." + std::to_string(i), params_[i]);
    load::write_tensors(out.file("trainable.safetensors"), p);
    auto st = opt.state();
    st.emplace_back("rng", at::detail::getDefaultCPUGenerator().get_state());
    load::write_tensors(out.file("optimizer.safetensors"), st);
    if (save_weights_) save_weights_(out.path());
    nlohmann::json j = {{"step", step},
                        {"total_steps", total_steps_},
                        {"fingerprint", o_.fingerprint},
                        {"log", nlohmann::json::array()}};
    for (const auto& pt : log) j["log"].push_back(point_json(pt));
    io::write_file_atomic(out.file("trainer_state.json"), j.dump(1) + "\n");
    out.commit();
  } catch (const Error& e) {
    SLLM_FAIL(
        "could not write checkpoint {} ({}); earlier checkpoints are intact: resume from "
        "them with --resume after freeing space",
        dir, e.what());
  }
  last_checkpoint_ = dir;
  // Keep the newest save_total_limit checkpoints.
  std::vector<fs::path> all;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0 &&
        e.path().filename().string().find('.') == std::string::npos)
      all.push_back(e.path());
  std::sort(all.begin(), all.end());
  for (size_t i = 0;
       o_.save_total_limit > 0 && i + static_cast<size_t>(o_.save_total_limit) < all.size(); ++i) {
    std::error_code ec;
    fs::remove_all(all[i], ec);
  }
}

int64_t Trainer::load_checkpoint(const std::string& dir, AdamW& opt, std::vector<LogPoint>* log) {
  const auto state_path = (fs::path(dir) / "trainer_state.json").string();
  SLLM_CHECK(fs::exists(state_path), "'{}' is not a checkpoint (no trainer_state.json)", dir);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(io::read_file(state_path));
  } catch (const nlohmann::json::exception& e) {
    SLLM_FAIL("{}: invalid JSON ({})", state_path, e.what());
  }
  for (const auto& [k, v] : o_.fingerprint.items())
    SLLM_CHECK(j["fingerprint"].value(k, nlohmann::json()) == v,
               "cannot resume from {}: it was trained with {}={}, this run has {}={}", dir, k,
               j["fingerprint"].value(k, nlohmann::json()).dump(), k, v.dump());
  auto p = load::read_tensors((fs::path(dir) / "trainable.safetensors").string());
  SLLM_CHECK(p.size() == params_.size(), "{}: {} trainable tensors, this run has {}", dir, p.size(),
             params_.size());
  {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < p.size(); ++i) {
      SLLM_CHECK(p[i].second.sizes() == params_[i].sizes(),
                 "{}: trainable tensor {} has shape {}, expected {}", dir, i,
                 c10::str(p[i].second.sizes()), c10::str(params_[i].sizes()));
      params_[i].copy_(p[i].second);
    }
  }
  auto st = load::read_tensors((fs::path(dir) / "optimizer.safetensors").string());
  SLLM_CHECK(!st.empty() && st.back().first == "rng", "{}: optimizer state has no RNG state", dir);
  auto gen = at::detail::getDefaultCPUGenerator();
  gen.set_state(st.back().second);
  st.pop_back();
  const int64_t step = j.at("step").get<int64_t>();
  opt.load_state(st, step);
  log->clear();
  for (const auto& pt : j.at("log")) log->push_back(point_from(pt));
  return step;
}

TrainResult Trainer::run() {
  AdamW opt(params_, {o_.lr, o_.beta1, o_.beta2, o_.eps, o_.weight_decay});
  TrainResult res;
  res.total_steps = total_steps_;
  int64_t start = 0;
  // libtorch seeds its default generator at random per process: fix it (dropout masks).
  at::manual_seed(o_.seed);
  if (!o_.resume.empty()) {
    const auto dir = o_.resume == "latest" ? latest_checkpoint(o_.run_dir) : o_.resume;
    SLLM_CHECK(!dir.empty(), "--resume: no checkpoint in {}/checkpoints", o_.run_dir);
    start = load_checkpoint(dir, opt, &res.log);
    log::info("resumed from {} at step {}/{}", dir, start, total_steps_);
  }
  // The log file holds exactly the points of this run's history (resumed ones rewritten).
  const auto log_path = (fs::path(o_.run_dir) / "train_log.jsonl").string();
  {
    std::string text;
    for (const auto& pt : res.log) text += point_json(pt).dump() + "\n";
    io::write_file_atomic(log_path, text);
  }
  std::ofstream log_file(log_path, std::ios::app);

  g_interrupts = 0;
  auto prev_handler = std::signal(SIGINT, on_sigint);
  struct Restore {
    decltype(prev_handler) h;
    ~Restore() { std::signal(SIGINT, h); }
  } restore{prev_handler};

  const double elapsed_before = res.log.empty() ? 0.0 : res.log.back().elapsed_s;
  Timer wall;
  ProgressBar bar(start > 0 ? fmt::format("training from step {}", start) : "training",
                  total_steps_ - start);
  int64_t window_tokens = 0;
  double window_s = 0, window_loss = 0, window_norm = 0, window_ce = 0, window_kd = 0;
  int64_t window_steps = 0;
  for (int64_t step = start; step < total_steps_; ++step) {
    model::TrainingScope training;
    Timer t;
    const auto micro = micro_batches_of_step(step);
    std::vector<Batch> batches;
    int64_t targets = 0;
    for (const auto& idx : micro) {
      batches.push_back(collate(idx, train_));
      targets += batches.back().target_tokens;
    }
    SLLM_CHECK(targets > 0, "step {}: no labelled tokens in the batch", step + 1);
    double step_loss = 0, step_ce = 0, step_kd = 0;
    int64_t step_tokens = 0;
    for (const auto& b : batches) {
      step_tokens += b.tokens;
      if (b.target_tokens == 0) continue;
      // Normalised by the step's target count: the gradient of the mean over all its tokens.
      auto parts = loss_parts(b);
      auto loss = parts.total / static_cast<double>(targets);
      const double lv = loss.item<double>();
      step_ce += parts.ce / static_cast<double>(targets);
      step_kd += parts.kd / static_cast<double>(targets);
      SLLM_CHECK(std::isfinite(lv),
                 "loss is {} at step {}: training diverged; lower train.lr (now {}), keep "
                 "train.max_grad_norm on, or check the data",
                 lv, step + 1, o_.lr);
      if (step == start && &b == &batches.front())
        log::debug("first micro-batch forward: peak RSS {}",
                   memory::format_bytes(memory::peak_rss_bytes()));
      loss.backward();
      // Low-memory mode: hand this micro-batch's freed memory back to the system; otherwise
      // glibc keeps it as fragments the next micro-batch's tensors cannot reuse (+100s of MB
      // peak RSS). Costs page faults, so only with activation checkpointing.
      if (o_.grad_checkpointing) ::malloc_trim(0);
      if (step == start && &b == &batches.front())
        log::debug("first micro-batch backward: peak RSS {}",
                   memory::format_bytes(memory::peak_rss_bytes()));
      step_loss += lv;
    }
    const double norm = clip_grad_norm(params_, o_.max_grad_norm);
    SLLM_CHECK(std::isfinite(norm), "gradient norm is {} at step {}: training diverged", norm,
               step + 1);
    const double lr = lr_at(o_.scheduler, o_.lr, step, warmup_, total_steps_);
    opt.step(lr);
    opt.zero_grad();
    const double dt = t.seconds();
    res.train_seconds += dt;
    res.train_tokens += step_tokens;
    res.steps = step + 1;
    window_tokens += step_tokens;
    window_s += dt;
    window_loss += step_loss;
    window_ce += step_ce;
    window_kd += step_kd;
    window_norm += norm;
    ++window_steps;
    bar.update(step + 1 - start, fmt::format("loss {:.4f} lr {:.2e}", step_loss, lr));

    const bool last = step + 1 == total_steps_;
    const bool do_log = (o_.log_every > 0 && (step + 1) % o_.log_every == 0) || last;
    const bool do_eval =
        !eval_.empty() && ((o_.eval_every > 0 && (step + 1) % o_.eval_every == 0) || last);
    if (do_log || do_eval) {
      LogPoint p;
      p.step = step + 1;
      p.loss = window_loss / window_steps;
      p.grad_norm = window_norm / window_steps;
      if (distill_) {
        p.ce_loss = window_ce / window_steps;
        p.kd_loss = window_kd / window_steps;
      }
      p.lr = lr;
      p.tokens_per_s = window_s > 0 ? window_tokens / window_s : 0;
      p.elapsed_s = elapsed_before + wall.seconds();
      p.peak_rss = memory::peak_rss_bytes();
      if (do_eval) {
        p.eval_loss = eval_loss(eval_);
        res.final_eval_loss = p.eval_loss;
      }
      res.log.push_back(p);
      log_file << point_json(p).dump() << "\n" << std::flush;
      log::info(
          "step {}/{}  loss {:.4f}{}{}  lr {:.2e}  grad {:.3f}  {:.0f} tok/s  {:.0f} s  rss {}",
          p.step, total_steps_, p.loss,
          distill_ ? fmt::format(" (ce {:.4f} kd {:.4f})", p.ce_loss, p.kd_loss) : "",
          p.eval_loss >= 0 ? fmt::format("  eval {:.4f}", p.eval_loss) : "", p.lr, p.grad_norm,
          p.tokens_per_s, p.elapsed_s, memory::format_bytes(p.peak_rss));
      window_tokens = 0;
      window_s = window_loss = window_norm = window_ce = window_kd = 0;
      window_steps = 0;
    }
    const bool interrupted = g_interrupts.load() > 0;
    if ((o_.save_every > 0 && (step + 1) % o_.save_every == 0) || last || interrupted)
      save_checkpoint(step + 1, opt, res.log);
    if (interrupted) {
      res.interrupted = true;
      bar.finish();
      log::warn("interrupted at step {}/{}; checkpoint written to {}; continue with --resume",
                step + 1, total_steps_, last_checkpoint_);
      break;
    }
  }
  bar.finish();
  res.tokens_per_s = res.train_seconds > 0 ? res.train_tokens / res.train_seconds : 0;
  res.peak_rss = memory::peak_rss_bytes();
  res.last_checkpoint = last_checkpoint_;
  return res;
}

}  // namespace sllm::train
