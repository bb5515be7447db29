#include "apps/common.h"

#include <ATen/Parallel.h>

#include <fmt/ranges.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "lora/lora.h"
#include "tokenizer/chat_template.h"

namespace sllm::apps {

using nlohmann::json;

const options::Group<load::LoadOptions>& model_group() {
  using G = options::Group<load::LoadOptions>;
  static const G g{
      G::plain({"model", nullptr, "GGUF file or Hugging Face model directory", "-m,--model"}),
      G::with<std::string>(
          {"dtype", "fp32", "weights/activations dtype: fp32, bf16, fp16", "--dtype"},
          [](load::LoadOptions& o, const std::string& v) { o.dtype = load::parse_dtype(v); }),
      G::with<std::string>(
          {"device", "cpu", "cpu, cuda or cuda:N", "--device"},
          [](load::LoadOptions& o, const std::string& v) { o.device = load::parse_device(v); }),
      G::member({"dequantize", false,
                 "dequantize GGUF block weights to --dtype when loading (default: run them as "
                 "stored); convert: also write quantized Linears dense",
                 "--dequantize"},
                &load::LoadOptions::dequantize),
      G::with<std::string>(
          {"gguf_act", "f32",
           "GGUF blocks as stored: activations as fp32 (f32) or int8 blocks (q8)", "--gguf-act"},
          [](load::LoadOptions& o, const std::string& v) {
            SLLM_CHECK(v == "q8" || v == "f32", "gguf_act must be q8 or f32 (got '{}')", v);
            o.gguf_q8_act = v == "q8";
          }),
      G::plain({"threads", 0, "CPU threads (0: libtorch default)", "--threads"}),
      G::plain({"adapter", nullptr, "LoRA adapter directory (PEFT layout) applied to the model",
                "--adapter"}),
  };
  return g;
}

options::Group<load::LoadOptions> quant_group(bool qlora) {
  using G = options::Group<load::LoadOptions>;
  using L = load::LoadOptions;
  return G{
      G::with<std::string>({"quant.type", qlora ? "nf4" : "none",
                            "decoder Linears of the base: none (dense), nf4 or fp4"},
                           [](L& o, const std::string& v) {
                             SLLM_CHECK(v == "none" || v == "nf4" || v == "fp4",
                                        "quant.type must be none, nf4 or fp4 (got '{}')", v);
                             o.quantize = v == "none" ? "" : v;
                           }),
      G::member({"quant.double_quant", true, "nf4/fp4: also quantize the absmax values"},
                &L::double_quant),
      G::member({"quant.blocksize", 64, "nf4/fp4: elements per absmax block"}, &L::blocksize),
  };
}

const options::Group<engine::EngineOptions>& engine_group() {
  using G = options::Group<engine::EngineOptions>;
  using E = engine::EngineOptions;
  static const G g{
      G::member({"ctx", 0, "context length per sequence (0: the model's)", "--ctx"}, &E::context),
      G::member({"engine.max_seqs", 16, "sequences decoded together", "--max-seqs"}, &E::max_seqs),
      G::member({"engine.block_size", 16, "KV cache block size in tokens", "--block-size"},
                &E::block_size),
      G::member({"engine.max_step_tokens", 512,
                 "tokens per engine step (longer prompts are prefilled in chunks)"},
                &E::max_step_tokens),
      G::member({"engine.kv_tokens", 0, "KV cache pool in tokens (0: one full context)"},
                &E::kv_tokens),
      G::member({"engine.prefix_caching", true,
                 "reuse the KV blocks of a prompt start computed before (prefix caching)",
                 "--prefix-caching,!--no-prefix-caching"},
                &E::prefix_caching),
  };
  return g;
}

const options::Group<engine::SamplingParams>& sampling_group() {
  using G = options::Group<engine::SamplingParams>;
  using P = engine::SamplingParams;
  static const G g{
      G::member({"sampling.temperature", 0.7, "0 = greedy", "--temperature"}, &P::temperature),
      G::member({"sampling.top_k", 0, "keep the k most likely tokens (0: off)", "--top-k"},
                &P::top_k),
      G::member({"sampling.top_p", 1.0, "nucleus sampling mass (1: off)", "--top-p"}, &P::top_p),
      G::member(
          {"sampling.min_p", 0.0, "drop tokens below min_p x the best probability", "--min-p"},
          &P::min_p),
      G::member({"sampling.repetition_penalty", 1.0, "1: off", "--repetition-penalty"},
                &P::repetition_penalty),
      G::member({"sampling.presence_penalty", 0.0,
                 "subtract this from the logit of every token already generated (0: off)",
                 "--presence-penalty"},
                &P::presence_penalty),
      G::member({"sampling.frequency_penalty", 0.0,
                 "subtract this x the token's count in the generated text (0: off)",
                 "--frequency-penalty"},
                &P::frequency_penalty),
      // Any integer seeds the generator (a negative one wraps).
      G::with<int64_t>({"sampling.seed", 42, "random seed", "--seed"},
                       [](P& p, int64_t v) { p.seed = static_cast<uint64_t>(v); }),
      G::member(
          {"sampling.max_new_tokens", 256, "tokens to generate at most", "-n,--max-new-tokens"},
          &P::max_new_tokens),
      G::with<json>({"sampling.stop", json::array(), "stop string (repeatable)", "--stop"},
                    [](P& p, const json& v) {
                      for (const auto& s : v) {
                        SLLM_CHECK(s.is_string(), "sampling.stop must be a list of strings");
                        p.stop.push_back(s.get<std::string>());
                      }
                    }),
      G::member(
          {"sampling.ignore_eos", false, "keep generating past end-of-sequence", "--ignore-eos"},
          &P::ignore_eos),
  };
  return g;
}

options::Table speculative_table() {
  return {
      {"speculative.draft_model", nullptr,
       "draft model (GGUF or HF directory) with the target's tokenizer: speculative decoding",
       "--draft-model"},
      {"speculative.draft", nullptr, "ngram: draft by prompt lookup, no draft model", "--draft"},
      // 3: the verify forward's 4 positions fill one tile of the fused GGUF kernels (4 rows per
      // pass over the weights); 5 take two passes, which cost more than k = 4 gains
      // (docs/speculative.md, bench/results/spec_cpu_*.json).
      {"speculative.num_tokens", 3, "tokens drafted per step and verified in one forward (1-32)",
       "--num-speculative-tokens"},
      {"speculative.ngram_min", 1, "shortest n-gram prompt lookup matches"},
      {"speculative.ngram_max", 3, "longest n-gram prompt lookup matches (tried first)"},
  };
}

namespace {
const std::string& model_path(const nlohmann::json& cfg) {
  SLLM_CHECK(cfg["model"].is_string(),
             "no model given: pass --model <file.gguf | hf-directory> (run scripts/setup.sh for "
             "the default model, models/SmolLM2-135M-Instruct.Q4_1.gguf)");
  return cfg["model"].get_ref<const std::string&>();
}
}  // namespace

load::LoadedModel load_from_config(const nlohmann::json& cfg) {
  const auto threads = config::get<int64_t>(cfg, "threads");
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  const auto& path = model_path(cfg);
  auto o = model_group().fill(cfg);
  if (cfg.contains("quant")) o = quant_group(false).fill(cfg, o);  // commands that offer quant.*
  Timer t;
  auto m = load::load_model(path, o);
  log::info("loaded {} ({}, {} layers) in {:.2f} s", m.display_name, m.format,
            m.model->config().num_layers, t.seconds());
  if (cfg["adapter"].is_string()) {
    const auto dir = cfg["adapter"].get<std::string>();
    lora::LoraConfig lc;
    m.model = lora::load_peft(*m.model, dir, &lc);
    log::info("adapter {} (LoRA r={}, alpha={}, {})", dir, lc.r, lc.alpha,
              fmt::join(lc.target_modules, ","));
  }
  return m;
}

std::shared_ptr<const tok::Tokenizer> load_tokenizer_from_config(const nlohmann::json& cfg) {
  return load::load_tokenizer(model_path(cfg));
}

engine::EngineOptions engine_options(const nlohmann::json& cfg) { return engine_group().fill(cfg); }

engine::SamplingParams sampling_params(const nlohmann::json& cfg) {
  const auto p = sampling_group().fill(cfg);
  p.validate();
  return p;
}

std::optional<engine::SpeculativeOptions> speculative_options(const nlohmann::json& cfg) {
  const auto& sp = cfg["speculative"];
  const bool has_model = sp["draft_model"].is_string(), has_draft = sp["draft"].is_string();
  if (!has_model && !has_draft) return std::nullopt;
  engine::SpeculativeOptions o;
  o.num_tokens = config::get<int64_t>(cfg, "speculative.num_tokens");
  o.ngram_min = config::get<int64_t>(cfg, "speculative.ngram_min");
  o.ngram_max = config::get<int64_t>(cfg, "speculative.ngram_max");
  if (has_draft) {
    const auto d = sp["draft"].get<std::string>();
    SLLM_CHECK(d == "ngram",
               "--draft must be 'ngram' (prompt lookup), got '{}': for a draft "
               "model pass --draft-model <file.gguf | hf-directory>",
               d);
    SLLM_CHECK(!has_model, "give one of --draft ngram or --draft-model, not both");
    return o;
  }
  const auto path = sp["draft_model"].get<std::string>();
  Timer t;
  auto m = load::load_model(path, model_group().fill(cfg));
  log::info("loaded draft {} ({}, {} layers) in {:.2f} s", m.display_name, m.format,
            m.model->config().num_layers, t.seconds());
  o.draft_model = m.model;
  o.draft_tokenizer = m.tokenizer;
  return o;
}

bool use_chat_template(const tok::Tokenizer& t, const nlohmann::json& v) {
  if (v.is_boolean()) return v.get<bool>();
  SLLM_CHECK(v.is_string() && (v == "auto" || v == "true" || v == "false"),
             "chat_template must be auto, true or false");
  if (v == "auto") return !t.chat_template.empty();
  return v == "true";
}

namespace {
std::vector<int32_t> encode_rendered(const tok::Tokenizer& t, const tok::ChatTemplate& tpl,
                                     const std::string& text) {
  std::vector<int32_t> ids;
  // A template that writes BOS itself already has it in the rendered text.
  if (t.add_bos && t.bos_id >= 0 && tpl.bos_text.empty()) ids.push_back(t.bos_id);
  auto body = t.encode(text, true);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}
}  // namespace

std::vector<int32_t> encode_chat(const tok::Tokenizer& t, const tok::ChatTemplate& tpl,
                                 const std::vector<tok::ChatMessage>& msgs) {
  return encode_rendered(t, tpl, tok::render_chat(tpl, msgs, /*add_generation_prompt=*/true));
}

std::vector<int32_t> encode_chat(const tok::Tokenizer& t, const tok::ChatTemplate& tpl,
                                 const nlohmann::ordered_json& msgs,
                                 const nlohmann::ordered_json& tools) {
  return encode_rendered(t, tpl, tok::render_chat(tpl, msgs, tools, true));
}

std::vector<int32_t> encode_prompt(const tok::Tokenizer& t, const std::string& text, bool chat,
                                   const std::string& system) {
  SLLM_CHECK(!text.empty(), "the prompt is empty: give some text with --prompt or --prompt-file");
  if (chat) {
    std::vector<tok::ChatMessage> msgs;
    if (!system.empty()) msgs.push_back({"system", system});
    msgs.push_back({"user", text});
    return encode_chat(t, tok::detect_chat_template(t), msgs);
  }
  std::vector<int32_t> ids;
  if (t.add_bos && t.bos_id >= 0) ids.push_back(t.bos_id);
  auto body = t.encode(text, /*parse_special=*/false);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

}  // namespace sllm::apps
