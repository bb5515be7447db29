// Speed in the worker beyond the prompt set: llama-bench style pp/tg, the batch sweep, and a short
// probe of memory bandwidth and compute rate for the roofline estimate of the best batch.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "apps/bench/bench.h"
#include "apps/bench/worker.h"
#include "core/error.h"
#include "core/timer.h"

namespace sllm::apps::bench {

using nlohmann::json;

namespace {

// Token ids that are ordinary text in any vocabulary of a few thousand entries or more.
std::vector<int32_t> synthetic_prompt(const WorkerState& w, int64_t n, int64_t salt) {
  const int64_t vocab = w.m.model->config().vocab_size;
  const int64_t lo = std::min<int64_t>(100, vocab / 4), span = std::max<int64_t>(1, vocab - 2 * lo);
  std::vector<int32_t> ids;
  const auto& t = *w.m.tokenizer;
  if (t.add_bos && t.bos_id >= 0) ids.push_back(t.bos_id);
  for (int64_t i = 0; static_cast<int64_t>(ids.size()) < n; ++i)
    ids.push_back(static_cast<int32_t>(lo + (i * 7919 + salt * 104729) % span));
  return ids;
}

engine::Request greedy(std::vector<int32_t> ids, int64_t max_new) {
  engine::Request r;
  r.prompt = std::move(ids);
  r.params.temperature = 0;
  r.params.ignore_eos = true;
  r.params.max_new_tokens = max_new;
  return r;
}

// Memory bandwidth (GB/s) from a read pass over 256 MiB, compute (GFLOP/s) from a square matmul
// in the model's dtype; best of a few runs each.
std::pair<double, double> probe_machine(const WorkerState& w) {
  const auto dev = w.m.model->device();
  const auto x = at::ones({64 << 20}, at::TensorOptions().dtype(at::kFloat).device(dev));
  double best_bw = 0, best_fl = 0;
  for (int i = 0; i < 4; ++i) {
    Timer t;
    const double s = x.sum().item<double>();
    const double secs = std::max(t.seconds(), 1e-9);
    if (i > 0 && s > 0) best_bw = std::max(best_bw, x.numel() * 4.0 / secs / 1e9);
  }
  const int64_t n = 1024;
  const auto a = at::ones({n, n}, at::TensorOptions().dtype(w.m.model->dtype()).device(dev));
  for (int i = 0; i < 4; ++i) {
    Timer t;
    const auto c = at::mm(a, a);
    const double v = c[0][0].item<double>();
    const double secs = std::max(t.seconds(), 1e-9);
    if (i > 0 && v > 0) best_fl = std::max(best_fl, 2.0 * n * n * n / secs / 1e9);
  }
  return {best_bw, best_fl};
}

}  // namespace

json op_pp_tg(WorkerState& w, const json& req) {
  const int64_t pp = req.at("pp").get<int64_t>(), tg = req.at("tg").get<int64_t>();
  const int64_t reps = req.at("reps").get<int64_t>(), warmup = req.at("warmup").get<int64_t>();
  const int64_t maxpos = w.m.model->config().max_position;
  SLLM_CHECK(pp + 1 <= maxpos && tg + 2 <= maxpos,
             "--pp {} / --tg {}: longer than the model's context ({})", pp, tg, maxpos);
  engine::EngineOptions eo;
  eo.context = std::max(pp + 1, tg + 2);
  eo.max_seqs = 1;
  eo.kv_tokens = eo.context;
  eo.prefix_caching = false;                        // every rep computes its whole prompt
  eo.max_step_tokens = std::max<int64_t>(512, pp);  // the prompt in one forward
  engine::Engine eng(w.m.model, w.m.tokenizer, eo);
  at::NoGradGuard no_grad;
  std::vector<double> pps, tgs;
  for (int64_t r = 0; r < warmup + reps; ++r) {
    std::vector<engine::Request> one;
    one.push_back(greedy(synthetic_prompt(w, pp, r), 1));
    const auto p = eng.generate(std::move(one))[0];
    one.clear();
    one.push_back(greedy(synthetic_prompt(w, 1, r), tg));
    const auto g = eng.generate(std::move(one))[0];
    if (r < warmup) continue;
    pps.push_back(pp / std::max(p.first_token_ms / 1e3, 1e-9));
    tgs.push_back(static_cast<double>(g.tokens.size()) / std::max(g.total_ms / 1e3, 1e-9));
  }
  return {{"pp_tok_s", mean_std(pps)}, {"tg_tok_s", mean_std(tgs)}, {"pp", pp}, {"tg", tg}};
}

json op_sweep(WorkerState& w, const json& req) {
  const auto batches = req.at("batches").get<std::vector<int64_t>>();
  const int64_t P = req.at("prompt_tokens").get<int64_t>(), G = req.at("gen_tokens").get<int64_t>();
  const auto& mc = w.m.model->config();
  SLLM_CHECK(P + G + 1 <= mc.max_position,
             "sweep sequences of {} + {} tokens exceed the context {}", P, G, mc.max_position);
  const double elem = static_cast<double>(c10::elementSize(w.m.model->dtype()));
  json rows = json::array();
  double best = 0;
  at::NoGradGuard no_grad;
  for (const int64_t b : batches) {
    engine::EngineOptions eo;
    eo.context = P + G + 1;
    eo.max_seqs = b;
    eo.kv_tokens = b * eo.context;
    eo.prefix_caching = false;  // each batch computes its prompts in full
    engine::Engine eng(w.m.model, w.m.tokenizer, eo);
    for (int64_t i = 0; i < b; ++i) eng.submit(greedy(synthetic_prompt(w, P, i), G));
    int64_t peak_tokens = 0;
    int32_t peak_blocks = 0;
    while (eng.step()) {
      const auto st = eng.cache().manager().stats();
      peak_tokens = std::max(peak_tokens, st.used_tokens);
      peak_blocks = std::max(peak_blocks, st.used_blocks);
    }
    const auto& s = eng.stats();
    const auto& cache = eng.cache();
    const double block_bytes =
        static_cast<double>(cache.allocated_bytes()) / std::max(1, cache.manager().num_blocks());
    const double tok_s = s.decode_s > 0 ? s.decode_tokens / s.decode_s : 0;
    const double steps = std::max(1.0, std::ceil(static_cast<double>(s.decode_tokens) / b));
    best = std::max(best, tok_s);
    rows.push_back(
        {{"batch", b},
         {"tok_s", tok_s},
         {"step_ms", 1e3 * s.decode_s / steps},
         {"kv_tokens", peak_tokens},
         {"kv_bytes_measured", static_cast<uint64_t>(block_bytes * peak_blocks)},
         {"kv_bytes_formula", static_cast<uint64_t>(2.0 * mc.num_layers * mc.num_kv_heads *
                                                    mc.head_dim * elem * peak_tokens)}});
  }
  json summary;
  if (req.value("probe", true)) {
    const auto [bw, fl] = probe_machine(w);
    const double params = static_cast<double>(mc.num_parameters());
    const double bytes_per_param = static_cast<double>(w.weights_bytes) / params;
    // Decode at batch B reads the weights once (bytes_per_param per parameter) and does 2·B
    // FLOP per parameter: compute-bound once 2·B / bytes_per_param exceeds compute / bandwidth.
    const double ridge = bw > 0 ? fl / bw : 0;
    const double crossover = ridge * bytes_per_param / 2.0;
    int64_t est = 1;
    while (est < crossover) est *= 2;
    int64_t measured = 0;
    for (const auto& r : rows)
      if (measured == 0 && r["tok_s"].get<double>() >= 0.9 * best)
        measured = r["batch"].get<int64_t>();
    summary = {{"bandwidth_gbs", bw},          {"compute_gflops", fl},
               {"ridge_flop_per_byte", ridge}, {"bytes_per_param", bytes_per_param},
               {"crossover_batch", crossover}, {"b_star_estimated", est},
               {"b_star_measured", measured}};
  }
  return {{"sweep", rows}, {"sweep_summary", summary}};
}

}  // namespace sllm::apps::bench
