// The worker side of the protocol: one request per stdin line, one reply per line on the
// original stdout (every other write to stdout goes to stderr, so logs cannot corrupt replies).
#include "apps/bench/worker.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "apps/bench/bench.h"
#include "apps/common.h"
#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/timer.h"
#include "ops/cuda_plugin.h"
#include "quantize/lm_head.h"

namespace fs = std::filesystem;

namespace sllm::apps::bench {

using nlohmann::json;

uint64_t disk_bytes(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return fs::file_size(path, ec);
  uint64_t total = 0;
  if (fs::is_directory(path, ec))
    for (const auto& e : fs::recursive_directory_iterator(path, ec))
      if (e.is_regular_file(ec)) total += e.file_size(ec);
  return total;
}

namespace {

bool g_crash_on_run = false;  // tests: SLLM_TEST_BENCH_CRASH=<model name>

// Every reply carries the process's peak memory so far: RSS, and on a CUDA device the caching
// allocator's peaks (what torch.cuda.max_memory_allocated / max_memory_reserved report).
void add_memory(json& r, const WorkerState& w) {
  r["peak_rss_bytes"] = memory::peak_rss_bytes();
  if (!w.m.model) return;
  const auto dev = w.m.model->device();
  if (!dev.is_cuda()) return;
  const auto peak = ops::cuda_peak_memory(dev.has_index() ? dev.index() : 0);
  r["cuda_allocated_bytes"] = peak.allocated;
  r["cuda_reserved_bytes"] = peak.reserved;
}

json op_load(WorkerState& w, const json& req) {
  const std::string name = req.at("name").get<std::string>();
  if (const char* c = std::getenv("SLLM_TEST_BENCH_CRASH")) g_crash_on_run = name == c;
  json cfg = options::defaults(model_group().table());
  cfg["model"] = req.at("model");
  cfg["adapter"] = req.at("adapter");
  cfg["dtype"] = req.at("dtype");
  cfg["device"] = req.at("device");
  cfg["threads"] = req.at("threads");
  Timer t;
  w.m = load_from_config(cfg);
  const double load_s = t.seconds();
  const auto& tk = *w.m.tokenizer;
  w.chat = use_chat_template(tk, req.at("chat_template"));
  w.ignore_eos = req.at("ignore_eos").get<bool>();
  w.batch = req.at("batch").get<int64_t>();
  const auto& mc = w.m.model->config();
  int64_t context = 0;
  json prompt_tokens = json::array();
  const auto& prompts = req.at("prompts");
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = prompts[i];
    std::vector<int32_t> ids;
    try {
      if (p["messages"].is_array()) {
        std::vector<tok::ChatMessage> msgs;
        for (const auto& m : p["messages"])
          msgs.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
        ids = encode_chat(tk, tok::detect_chat_template(tk), msgs);
      } else {
        ids = encode_prompt(tk, p["text"].get<std::string>(), w.chat, "");
      }
    } catch (const Error& e) {
      SLLM_FAIL("prompt {} ({}): {}", i + 1, p.value("label", ""), e.what());
    }
    const int64_t mx = p["max_new_tokens"].get<int64_t>();
    SLLM_CHECK(static_cast<int64_t>(ids.size()) + 1 <= mc.max_position,
               "prompt {} ({}) has {} tokens: longer than the model's context ({})", i + 1,
               p.value("label", ""), ids.size(), mc.max_position);
    context = std::max<int64_t>(context, static_cast<int64_t>(ids.size()) + mx + 1);
    prompt_tokens.push_back(ids.size());
    w.prompts.push_back(std::move(ids));
    w.max_new_tokens.push_back(mx);
  }
  engine::EngineOptions eo;
  eo.context = std::min<int64_t>(context, mc.max_position);
  eo.max_seqs = w.batch;
  eo.kv_tokens = eo.context * w.batch;
  eo.prefix_caching = false;  // timings of repeated runs compute every prompt
  w.engine = std::make_unique<engine::Engine>(w.m.model, w.m.tokenizer, eo);
  const int64_t params = mc.num_parameters();
  // GGUF and dense HF weights are held in the model's dtype; quantized HF layouts (integer
  // tensors in the file) stay packed, about as large as they are stored.
  w.weights_bytes = static_cast<uint64_t>(params) * c10::elementSize(w.m.model->dtype());
  if (w.m.format == "hf")
    for (const char* t : {"I32", "U8", "I8"})
      if (w.m.file_tensor_types.count(t)) w.weights_bytes = w.m.file_bytes;
  uint64_t on_disk = disk_bytes(req.at("model").get<std::string>());
  if (req.at("adapter").is_string()) on_disk += disk_bytes(req.at("adapter").get<std::string>());
  return {{"load_s", load_s},
          {"weights_bytes", on_disk},
          {"format", w.m.format},
          {"display_name", w.m.display_name},
          {"lm_head", quantize::describe_lm_head(*w.m.model)},
          {"parameters", params},
          {"layers", mc.num_layers},
          {"kv_heads", mc.num_kv_heads},
          {"head_dim", mc.head_dim},
          {"vocab_size", mc.vocab_size},
          {"dtype_bytes", c10::elementSize(w.m.model->dtype())},
          {"device", w.m.model->device().str()},
          {"prompt_tokens", prompt_tokens}};
}

json op_run(WorkerState& w) {
  SLLM_CHECK(w.engine, "run before load");
  if (g_crash_on_run) std::abort();
  std::vector<engine::Request> reqs;
  for (size_t i = 0; i < w.prompts.size(); ++i) {
    engine::Request r;
    r.prompt = w.prompts[i];
    r.params.temperature = 0;
    r.params.ignore_eos = w.ignore_eos;
    r.params.max_new_tokens = w.max_new_tokens[i];
    reqs.push_back(std::move(r));
  }
  at::NoGradGuard no_grad;
  const auto results = w.engine->generate(std::move(reqs));
  json out = json::array();
  for (const auto& r : results)
    out.push_back({{"prompt_tokens", r.prompt_tokens},
                   {"output_tokens", r.tokens.size()},
                   {"e2e_ms", r.total_ms},
                   {"ttft_ms", r.first_token_ms},
                   {"tokens", r.tokens},
                   {"text", r.text},
                   {"finish_reason", std::string(engine::to_string(r.finish_reason))}});
  return {{"requests", out}};
}

json handle(WorkerState& w, const json& req) {
  const std::string op = req.at("op").get<std::string>();
  if (op == "quit") return json::object();
  json r;
  if (op == "load")
    r = op_load(w, req);
  else if (op == "run")
    r = op_run(w);
  else if (!w.m.model)
    SLLM_FAIL("{} before load", op);
  else if (op == "task")
    r = op_task(w, req);
  else if (op == "ppl")
    r = op_ppl(w, req);
  else if (op == "pp_tg")
    r = op_pp_tg(w, req);
  else if (op == "sweep")
    r = op_sweep(w, req);
  else
    SLLM_FAIL("unknown worker request '{}'", op);
  add_memory(r, w);
  return r;
}

void write_all(int fd, const std::string& s) {
  for (size_t off = 0; off < s.size();) {
    const ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n <= 0) std::_Exit(1);  // the driver is gone
    off += static_cast<size_t>(n);
  }
}

}  // namespace

int worker_main() {
  std::cout.flush();
  const int proto = dup(1);
  dup2(2, 1);
  if (!std::getenv("SLLM_LOG_LEVEL")) log::set_level(log::Level::warn);
  WorkerState w;
  std::string line;
  while (std::getline(std::cin, line)) {
    json reply;
    std::string op;
    try {
      const json req = json::parse(line);
      op = req.value("op", "");
      reply = handle(w, req);
      reply["ok"] = true;
    } catch (const c10::Error& e) {
      reply = {{"ok", false}, {"error", e.what_without_backtrace()}};
    } catch (const std::exception& e) {
      reply = {{"ok", false}, {"error", e.what()}};
    }
    write_all(proto, reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
    if (op == "quit") break;
  }
  return 0;
}

}  // namespace sllm::apps::bench
