// Quality in the worker: task exact match (the function `sllm eval --task` runs), perplexity (the
// protocol of `sllm eval --ppl`) and the KL divergence of next-token distributions against the
// first model. The workers are separate processes, so the first model writes its log-probs to a
// file and the others read it back.
#include <ATen/ATen.h>

#include <cstdio>
#include <fstream>

#include "apps/bench/worker.h"
#include "apps/common.h"
#include "apps/perplexity.h"
#include "apps/task_eval.h"
#include "core/error.h"
#include "io/atomic_write.h"

namespace sllm::apps::bench {

using nlohmann::json;

json op_task(WorkerState& w, const json& req) {
  const auto file = req.at("file").get<std::string>();
  const auto items = eval::load_task_file(file, req.at("limit").get<int64_t>());
  TaskEvalSettings s;
  s.prompt.chat_template = use_chat_template(*w.m.tokenizer, req.at("chat_template"));
  s.max_new_tokens = req.at("max_new_tokens").get<int64_t>();
  at::NoGradGuard no_grad;
  const auto r = run_task_eval(w.m.model, w.m.tokenizer, items, s, "task eval");
  return {{"exact_match", r.summary.exact_match},
          {"exact", r.summary.exact},
          {"n", r.summary.n},
          {"field_match", r.summary.field_match}};
}

namespace {

// Log-probs [len-1, vocab] (fp32, CPU) of each window of the ppl protocol, in order.
template <class F>
void for_each_window(const model::LlamaModel& m, const std::vector<int32_t>& ids, int64_t ctx,
                     F fn) {
  const int64_t n = static_cast<int64_t>(ids.size());
  for (int64_t start = 0; start + 1 < n; start += ctx) {
    const int64_t len = std::min(ctx, n - start);
    if (len < 2) break;
    auto win =
        at::tensor(std::vector<int64_t>(ids.begin() + start, ids.begin() + start + len), at::kLong)
            .unsqueeze(0);
    fn(at::log_softmax(
           m.forward_full(win.to(m.device()))[0].narrow(0, 0, len - 1).to(at::kFloat).cpu(), -1)
           .contiguous());
  }
}

struct RefHeader {
  int64_t rows = 0, vocab = 0;
};

}  // namespace

json op_ppl(WorkerState& w, const json& req) {
  const auto file = req.at("file").get<std::string>();
  const auto ctx = req.at("ctx").get<int64_t>();
  const auto ids = ppl_tokens(*w.m.tokenizer, io::read_file(file), file);
  at::NoGradGuard no_grad;
  const auto r = perplexity(*w.m.model, ids, ctx, nullptr, "perplexity");
  json out = {{"ppl", r.perplexity}, {"mean_nll", r.mean_nll}, {"scored", r.scored}};
  const int64_t kn = std::min<int64_t>(static_cast<int64_t>(ids.size()),
                                       std::max<int64_t>(2, req.at("kld_tokens").get<int64_t>()));
  const std::vector<int32_t> kids(ids.begin(), ids.begin() + kn);
  const int64_t vocab = w.m.model->config().vocab_size;
  if (req.contains("kld_out")) {
    // The reference: rows of log-probs, after a header of (rows, vocab).
    const auto path = req["kld_out"].get<std::string>();
    std::ofstream f(path, std::ios::binary);
    SLLM_CHECK(f, "cannot write {}", path);
    RefHeader h{0, vocab};
    f.write(reinterpret_cast<const char*>(&h), sizeof h);
    for_each_window(*w.m.model, kids, ctx, [&](const at::Tensor& lp) {
      f.write(reinterpret_cast<const char*>(lp.data_ptr<float>()), lp.numel() * sizeof(float));
      h.rows += lp.size(0);
    });
    f.seekp(0);
    f.write(reinterpret_cast<const char*>(&h), sizeof h);
    SLLM_CHECK(f.good(), "writing {} failed (disk full?)", path);
  } else if (req.contains("kld_in")) {
    const auto path = req["kld_in"].get<std::string>();
    std::ifstream f(path, std::ios::binary);
    RefHeader h;
    SLLM_CHECK(f && f.read(reinterpret_cast<char*>(&h), sizeof h), "cannot read {}", path);
    if (h.vocab != vocab) {
      out["kld"] = nullptr;
      out["kld_note"] =
          fmt::format("vocabulary {} differs from the first model's {}", vocab, h.vocab);
      return out;
    }
    double kld = 0, same = 0;
    int64_t rows = 0;
    for_each_window(*w.m.model, kids, ctx, [&](const at::Tensor& lp) {
      auto ref = at::empty_like(lp);
      SLLM_CHECK(
          f.read(reinterpret_cast<char*>(ref.data_ptr<float>()), ref.numel() * sizeof(float)),
          "{}: the reference log-probs end early (a different tokenization of the text?)", path);
      kld += (ref.exp() * (ref - lp)).sum().item<double>();
      same += ref.argmax(-1).eq(lp.argmax(-1)).sum().item<double>();
      rows += lp.size(0);
    });
    SLLM_CHECK(rows == h.rows, "the reference scored {} positions, this model {}", h.rows, rows);
    out["kld"] = kld / static_cast<double>(rows);
    out["same_top_pct"] = 100.0 * same / static_cast<double>(rows);
    out["kld_positions"] = rows;
  }
  return out;
}

}  // namespace sllm::apps::bench
