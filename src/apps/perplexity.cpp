#include "apps/perplexity.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/error.h"
#include "core/progress.h"
#include "core/timer.h"

namespace sllm::apps {

std::vector<int32_t> ppl_tokens(const tok::Tokenizer& t, const std::string& text,
                                const std::string& where) {
  std::vector<int32_t> ids;
  if (t.add_bos && t.bos_id >= 0) ids.push_back(t.bos_id);
  auto body = t.encode(text, /*parse_special=*/false);
  ids.insert(ids.end(), body.begin(), body.end());
  SLLM_CHECK(ids.size() >= 2, "{}: needs at least 2 tokens of text, has {}", where, ids.size());
  return ids;
}

PplResult perplexity(const model::LlamaModel& m, const std::vector<int32_t>& ids, int64_t ctx,
                     const model::LlamaModel* ref, const std::string& label) {
  SLLM_CHECK(ctx >= 2, "ctx must be at least 2, got {}", ctx);
  SLLM_CHECK(ctx <= m.config().max_position, "ctx {} exceeds the model's context {}", ctx,
             m.config().max_position);
  if (ref)
    SLLM_CHECK(ref->config().vocab_size == m.config().vocab_size,
               "the reference model's vocabulary ({}) differs from the model's ({}); KL "
               "divergence needs the same tokenizer",
               ref->config().vocab_size, m.config().vocab_size);
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t windows = (n + ctx - 1) / ctx - ((n % ctx) == 1 ? 1 : 0);
  PplResult r;
  r.tokens = n;
  r.windows = windows;
  r.has_ref = ref != nullptr;
  double nll = 0, ref_nll = 0, kld = 0;
  int64_t same = 0;
  Timer t;
  ProgressBar bar(label, windows);
  at::NoGradGuard no_grad;
  for (int64_t w = 0; w < windows; ++w) {
    const int64_t start = w * ctx, len = std::min(ctx, n - start);
    auto win =
        at::tensor(std::vector<int64_t>(ids.begin() + start, ids.begin() + start + len), at::kLong)
            .unsqueeze(0);
    auto target = win[0].narrow(0, 1, len - 1);
    auto logp =
        at::log_softmax(m.forward_full(win.to(m.device()))[0].narrow(0, 0, len - 1).cpu(), -1);
    nll -= logp.gather(1, target.unsqueeze(1)).sum().item<double>();
    if (ref) {
      auto ref_logp = at::log_softmax(
          ref->forward_full(win.to(ref->device()))[0].narrow(0, 0, len - 1).cpu(), -1);
      ref_nll -= ref_logp.gather(1, target.unsqueeze(1)).sum().item<double>();
      auto kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1);  // per position
      kld += kl.sum().item<double>();
      r.max_kld = std::max(r.max_kld, kl.max().item<double>());
      same += ref_logp.argmax(-1).eq(logp.argmax(-1)).sum().item<int64_t>();
    }
    r.scored += len - 1;
    bar.update(w + 1);
  }
  bar.finish();
  r.mean_nll = nll / static_cast<double>(r.scored);
  r.perplexity = std::exp(r.mean_nll);
  if (ref) {
    r.ref_perplexity = std::exp(ref_nll / static_cast<double>(r.scored));
    r.mean_kld = kld / static_cast<double>(r.scored);
    r.same_top = 100.0 * static_cast<double>(same) / static_cast<double>(r.scored);
  }
  r.seconds = t.seconds();
  return r;
}

}  // namespace sllm::apps
