// sllm eval --ppl: perplexity over non-overlapping windows.
// Protocol (docs/eval.md): tokenize the whole file once (BOS first when the model adds
// one), cut into consecutive windows of `ctx` tokens (a last window of >= 2 tokens is
// kept), score every token of a window but its first from the tokens before it in the
// same window; perplexity = exp(total NLL / scored tokens).
#include <ATen/ATen.h>

#include <iostream>

#include "apps/apps.h"
#include "apps/common.h"
#include "core/config.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/timer.h"
#include "io/atomic_write.h"

namespace sllm::apps {

nlohmann::json eval_defaults() {
  return merged(model_defaults(), {{"ppl", nullptr}, {"ctx", 512}, {"json", false}});
}

int run_eval(const nlohmann::json& cfg) {
  SLLM_CHECK(cfg["ppl"].is_string(), "give a text file with --ppl FILE");
  const auto ctx = config::get<int64_t>(cfg, "ctx");
  SLLM_CHECK(ctx >= 2, "ctx must be at least 2, got {}", ctx);
  const std::string path = cfg["ppl"].get<std::string>();
  const std::string text = io::read_file(path);
  auto m = load_from_config(cfg);
  SLLM_CHECK(ctx <= m.model->config().max_position, "ctx {} exceeds the model's context {}", ctx,
             m.model->config().max_position);
  std::vector<int32_t> ids;
  if (m.tokenizer->add_bos && m.tokenizer->bos_id >= 0) ids.push_back(m.tokenizer->bos_id);
  auto body = m.tokenizer->encode(text, /*parse_special=*/false);
  ids.insert(ids.end(), body.begin(), body.end());
  SLLM_CHECK(ids.size() >= 2, "{}: needs at least 2 tokens of text, has {}", path, ids.size());
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t windows = (n + ctx - 1) / ctx - ((n % ctx) == 1 ? 1 : 0);
  double nll = 0;
  int64_t scored = 0;
  Timer t;
  ProgressBar bar("perplexity", windows);
  at::NoGradGuard no_grad;
  for (int64_t w = 0; w < windows; ++w) {
    const int64_t start = w * ctx, len = std::min(ctx, n - start);
    auto win =
        at::tensor(std::vector<int64_t>(ids.begin() + start, ids.begin() + start + len), at::kLong)
            .unsqueeze(0)
            .to(m.model->device());
    auto logits = m.model->forward_full(win)[0];
    auto loss = at::cross_entropy_loss(logits.narrow(0, 0, len - 1), win[0].narrow(0, 1, len - 1),
                                       {}, at::Reduction::Sum);
    nll += loss.item<double>();
    scored += len - 1;
    bar.update(w + 1);
  }
  bar.finish();
  const double ppl = std::exp(nll / scored);
  nlohmann::json j = {{"model", m.path},          {"file", path},      {"ctx", ctx},
                      {"windows", windows},       {"tokens", n},       {"scored_tokens", scored},
                      {"mean_nll", nll / scored}, {"perplexity", ppl}, {"seconds", t.seconds()}};
  if (config::get<bool>(cfg, "json")) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << fmt::format(
        "perplexity {:.4f}  (mean NLL {:.5f} over {} tokens, {} windows of {}, {:.1f} s)\n", ppl,
        nll / scored, scored, windows, ctx, t.seconds());
  }
  return 0;
}

}  // namespace sllm::apps
