#include "data/jsonl_dataset.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "core/log.h"

namespace sllm::data {

namespace {

using nlohmann::json;

constexpr int kMaxWarnings = 5;  // skipped-line warnings logged before going quiet

enum class Format { text, prompt_completion, messages };

// A line-level problem: skippable with skip_bad_lines, else rethrown with path:line.
struct BadLine {
  std::string what;
};

void append(std::vector<int32_t>& ids, std::vector<int32_t>& labels,
            const std::vector<int32_t>& add, bool labelled) {
  ids.insert(ids.end(), add.begin(), add.end());
  for (int32_t id : add) labels.push_back(labelled ? id : kIgnore);
}

// The token that closes an assistant turn as the template writes it ("" when it writes none).
std::string turn_end_text(const tok::ChatTemplate& tpl) {
  switch (tpl.format) {
    case tok::ChatFormat::chatml:
      return "<|im_end|>";
    case tok::ChatFormat::llama3:
      return "<|eot_id|>";
    case tok::ChatFormat::llama2:
    case tok::ChatFormat::mistral:
      return tpl.eos_text;
    case tok::ChatFormat::plain:
      return "";
  }
  return "";
}

// Ids that end a prompt/completion target: the template's turn end (what generation stops on
// after an assistant turn), then EOS when it is a different token, so every target ends with EOS.
std::vector<int32_t> target_end(const tok::Tokenizer& t, const tok::ChatTemplate& tpl, bool chat) {
  std::vector<int32_t> out;
  if (chat) {
    std::string te = turn_end_text(tpl);
    if (auto id = te.empty() ? std::nullopt : t.token_to_id(te); id && *id != t.eos_id)
      out.push_back(*id);
  }
  if (t.eos_id >= 0) out.push_back(t.eos_id);
  return out;
}

const json& field(const json& j, const char* key, json::value_t type, const char* type_name) {
  auto it = j.find(key);
  if (it == j.end()) throw BadLine{fmt::format("missing field \"{}\"", key)};
  if (it->type() != type)
    throw BadLine{fmt::format("field \"{}\" must be {} (got {})", key, type_name, it->type_name())};
  return *it;
}

std::string str_field(const json& j, const char* key) {
  return field(j, key, json::value_t::string, "a string").get<std::string>();
}

Format detect(const json& j, const std::string& format) {
  if (format == "text") return Format::text;
  if (format == "prompt_completion") return Format::prompt_completion;
  if (format == "messages") return Format::messages;
  if (j.contains("messages")) return Format::messages;
  if (j.contains("prompt") || j.contains("completion")) return Format::prompt_completion;
  if (j.contains("text")) return Format::text;
  std::string keys;
  for (const auto& [k, v] : j.items()) keys += (keys.empty() ? "" : ", ") + k;
  throw BadLine{
      fmt::format("expected a \"text\", \"prompt\"/\"completion\" or \"messages\" field (keys: {})",
                  keys.empty() ? "none" : keys)};
}

Example encode_prompt_completion(const json& j, const tok::Tokenizer& t,
                                 const tok::ChatTemplate& tpl, const DatasetOptions& o) {
  std::string prompt = str_field(j, "prompt"), completion = str_field(j, "completion");
  Example e;
  append(e.ids, e.labels, encode_task_prompt(t, tpl, prompt, o), !o.completion_only);
  // The completion is data, never markup: literal "<|im_end|>" in it stays text.
  append(e.ids, e.labels, t.encode(completion, /*parse_special=*/false), true);
  append(e.ids, e.labels, target_end(t, tpl, o.chat_template), true);
  return e;
}

// Byte offset where each token starts, when the tokens spell `text` byte for byte; empty when they
// do not (normalizers, SentencePiece's dummy prefix), and the caller falls back.
std::vector<size_t> token_offsets(const tok::Tokenizer& t, const std::vector<int32_t>& ids,
                                  const std::string& text) {
  std::vector<size_t> starts;
  size_t pos = 0;
  for (int32_t id : ids) {
    std::string b = t.token_bytes(id);
    if (text.compare(pos, b.size(), b) != 0) return {};
    starts.push_back(pos);
    pos += b.size();
  }
  if (pos != text.size()) return {};
  return starts;
}

Example encode_text(const json& j, const tok::Tokenizer& t, const DatasetOptions& o) {
  std::string text = str_field(j, "text");
  size_t boundary = 0;  // byte offset where the labelled part starts
  if (o.completion_only) {
    size_t p = text.find(o.response_template);
    if (o.response_template.empty() || p == std::string::npos)
      throw BadLine{fmt::format(
          "response template \"{}\" not found in \"text\" (set completion_only: false to train "
          "on the whole text)",
          o.response_template)};
    boundary = p + o.response_template.size();
  }
  Example e;
  if (t.add_bos && t.bos_id >= 0) append(e.ids, e.labels, {t.bos_id}, !o.completion_only);
  // Text rows may carry chat markup written out, so special tokens are parsed as HF does.
  auto body = t.encode(text, /*parse_special=*/true);
  auto starts = token_offsets(t, body, text);
  if (!starts.empty() || body.empty()) {
    // Tokenize once and label tokens that start at or after the template's end.
    e.ids.insert(e.ids.end(), body.begin(), body.end());
    for (size_t i = 0; i < body.size(); ++i)
      e.labels.push_back(starts[i] >= boundary ? body[i] : kIgnore);
  } else {
    // Tokens do not map onto bytes: tokenize both sides of the boundary separately, which may
    // differ from the whole-text tokenization at that one point.
    append(e.ids, e.labels, t.encode(text.substr(0, boundary), true), false);
    append(e.ids, e.labels, t.encode(text.substr(boundary), true), true);
  }
  if (t.eos_id >= 0) append(e.ids, e.labels, {t.eos_id}, true);
  return e;
}

std::vector<tok::ChatMessage> parse_messages(const json& j) {
  const json& arr = field(j, "messages", json::value_t::array, "an array");
  if (arr.empty()) throw BadLine{"\"messages\" is empty"};
  std::vector<tok::ChatMessage> msgs;
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& m = arr[i];
    if (!m.is_object()) throw BadLine{fmt::format("messages[{}] must be an object", i)};
    for (const char* k : {"role", "content"}) {
      if (!m.contains(k)) throw BadLine{fmt::format("messages[{}] has no \"{}\"", i, k)};
      if (!m[k].is_string())
        throw BadLine{
            fmt::format("messages[{}].{} must be a string (got {})", i, k, m[k].type_name())};
    }
    msgs.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return msgs;
}

// Renders growing prefixes of the conversation and tokenizes the text between them, so each
// assistant turn's span is known exactly. Approximation: the pieces are tokenized separately, so
// a BPE merge across a piece boundary (in practice always next to a special token or a newline)
// would differ from tokenizing the whole render.
Example encode_messages(const json& j, const tok::Tokenizer& t, const tok::ChatTemplate& tpl,
                        const DatasetOptions& o) {
  auto msgs = parse_messages(j);
  const std::string te = turn_end_text(tpl);
  Example e;
  // As apps::encode_chat: a template that writes BOS itself already has it in the text.
  if (t.add_bos && t.bos_id >= 0 && tpl.bos_text.empty())
    append(e.ids, e.labels, {t.bos_id}, !o.completion_only);
  auto piece = [&](const std::string& s, bool labelled) {
    if (!s.empty()) append(e.ids, e.labels, t.encode(s, true), labelled || !o.completion_only);
  };
  auto starts_with = [](const std::string& s, const std::string& p) {
    return s.compare(0, p.size(), p) == 0;
  };
  std::vector<tok::ChatMessage> prefix;
  std::string done;        // rendered text already tokenized
  int32_t turn_last = -1;  // last token of the last assistant turn
  for (const auto& m : msgs) {
    prefix.push_back(m);
    const std::string full = tok::render_chat(tpl, prefix, /*add_generation_prompt=*/false);
    if (!starts_with(full, done))
      throw BadLine{"the chat template does not render this conversation incrementally"};
    if (m.role != "assistant") continue;  // untrained text accumulates until an assistant turn
    // The turn starts after the generation prompt (ChatML, Llama 3) or, for templates without
    // one (Llama 2, Mistral, plain), after the previous messages.
    const std::vector<tok::ChatMessage> before(prefix.begin(), prefix.end() - 1);
    std::string head = tok::render_chat(tpl, before, true);
    if (!starts_with(full, head) || head.size() < done.size())
      head = tok::render_chat(tpl, before, false);
    if (!starts_with(full, head) || head.size() < done.size()) head = done;
    piece(head.substr(done.size()), false);
    // Labelled: the content through its turn end; what follows it (ChatML's "\n") is not.
    const std::string turn = full.substr(head.size());
    const size_t end = te.empty() ? std::string::npos : turn.rfind(te);
    const size_t cut = end == std::string::npos ? turn.size() : end + te.size();
    piece(turn.substr(0, cut), true);
    if (!e.ids.empty()) turn_last = e.ids.back();
    piece(turn.substr(cut), false);
    done = full;
  }
  piece(tok::render_chat(tpl, msgs, false).substr(done.size()), false);
  // Every target ends with EOS: when the turn end is another token (or there is none), EOS
  // follows a conversation that ends with an assistant turn.
  if (t.eos_id >= 0 && msgs.back().role == "assistant" && turn_last != t.eos_id)
    append(e.ids, e.labels, {t.eos_id}, true);
  return e;
}

void recount(Dataset& d) {
  d.stats.examples = static_cast<int64_t>(d.examples.size());
  d.stats.tokens = d.stats.target_tokens = 0;
  for (const auto& e : d.examples) {
    d.stats.tokens += static_cast<int64_t>(e.ids.size());
    d.stats.target_tokens +=
        std::count_if(e.labels.begin(), e.labels.end(), [](int32_t l) { return l != kIgnore; });
  }
}

}  // namespace

std::vector<int32_t> encode_task_prompt(const tok::Tokenizer& t, const tok::ChatTemplate& tpl,
                                        const std::string& prompt, const DatasetOptions& o) {
  std::vector<int32_t> ids;
  if (o.chat_template) {
    // Mirrors apps::encode_chat, which generation uses.
    std::vector<tok::ChatMessage> msgs;
    if (!o.system.empty()) msgs.push_back({"system", o.system});
    msgs.push_back({"user", prompt});
    if (t.add_bos && t.bos_id >= 0 && tpl.bos_text.empty()) ids.push_back(t.bos_id);
    auto body = t.encode(tok::render_chat(tpl, msgs, /*add_generation_prompt=*/true), true);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
  }
  if (t.add_bos && t.bos_id >= 0) ids.push_back(t.bos_id);
  auto body = t.encode(prompt, /*parse_special=*/false);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

Dataset load_jsonl(const std::string& path, const tok::Tokenizer& t, const tok::ChatTemplate& tpl,
                   const DatasetOptions& o) {
  SLLM_CHECK(o.format == "auto" || o.format == "text" || o.format == "prompt_completion" ||
                 o.format == "messages",
             "dataset format must be auto, text, prompt_completion or messages (got \"{}\")",
             o.format);
  SLLM_CHECK(o.max_seq_length > 0, "max_seq_length must be positive (got {})", o.max_seq_length);
  std::ifstream in(path, std::ios::binary);
  SLLM_CHECK(in, "cannot open dataset {}", path);

  Dataset d;
  d.path = path;
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    ++d.stats.lines;
    Example e;
    try {
      json j;
      try {
        j = json::parse(line);
      } catch (const json::exception& ex) {
        throw BadLine{fmt::format("invalid JSON: {}", ex.what())};
      }
      if (!j.is_object())
        throw BadLine{fmt::format("expected a JSON object, got {}", j.type_name())};
      switch (detect(j, o.format)) {
        case Format::text:
          e = encode_text(j, t, o);
          break;
        case Format::prompt_completion:
          e = encode_prompt_completion(j, t, tpl, o);
          break;
        case Format::messages:
          try {
            e = encode_messages(j, t, tpl, o);
          } catch (const Error& ex) {  // the template rejects the conversation
            throw BadLine{ex.what()};
          }
          break;
      }
    } catch (const BadLine& bad) {
      SLLM_CHECK(o.skip_bad_lines, "{}:{}: {}", path, lineno, bad.what);
      if (++d.stats.skipped_bad <= kMaxWarnings)
        log::warn("skipping {}:{}: {}", path, lineno, bad.what);
      continue;
    }
    if (static_cast<int64_t>(e.ids.size()) > o.max_seq_length) {
      e.ids.resize(o.max_seq_length);
      e.labels.resize(o.max_seq_length);
      ++d.stats.truncated;
    }
    if (std::all_of(e.labels.begin(), e.labels.end(), [](int32_t l) { return l == kIgnore; })) {
      ++d.stats.dropped_no_target;
      continue;
    }
    d.examples.push_back(std::move(e));
  }
  if (d.stats.skipped_bad > kMaxWarnings)
    log::warn("skipped {} malformed lines in {} in all", d.stats.skipped_bad, path);
  SLLM_CHECK(!d.examples.empty(),
             "no examples in {} ({} non-empty lines, {} malformed, {} with nothing to train on "
             "after truncation to {} tokens)",
             path, d.stats.lines, d.stats.skipped_bad, d.stats.dropped_no_target, o.max_seq_length);
  recount(d);
  return d;
}

std::pair<Dataset, Dataset> split(const Dataset& d, double eval_fraction, uint64_t seed) {
  const auto n = static_cast<int64_t>(d.examples.size());
  SLLM_CHECK(eval_fraction > 0.0 && eval_fraction < 1.0, "eval fraction must be in (0, 1) (got {})",
             eval_fraction);
  SLLM_CHECK(n >= 2, "cannot split {}: it has {} example(s), need at least 2", d.path, n);
  const int64_t n_eval =
      std::clamp<int64_t>(std::llround(eval_fraction * static_cast<double>(n)), 1, n - 1);

  // Fisher-Yates with our own bounded draw: std::shuffle and the distributions differ between
  // standard libraries, this does not.
  std::vector<int64_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    const uint64_t bound = static_cast<uint64_t>(i) + 1;
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;  // reject the biased tail
    uint64_t r;
    do r = rng();
    while (r >= limit);
    std::swap(idx[i], idx[static_cast<int64_t>(r % bound)]);
  }
  // Each part keeps file order, which makes the parts easy to inspect.
  std::vector<int64_t> ev(idx.begin(), idx.begin() + n_eval), tr(idx.begin() + n_eval, idx.end());
  std::sort(ev.begin(), ev.end());
  std::sort(tr.begin(), tr.end());

  std::pair<Dataset, Dataset> out;
  for (auto [part, ids] : {std::pair{&out.first, &tr}, std::pair{&out.second, &ev}}) {
    part->path = d.path;
    for (int64_t i : *ids) part->examples.push_back(d.examples[i]);
    recount(*part);
  }
  return out;
}

std::vector<Example> pack(const std::vector<Example>& ex, int64_t max_seq_length) {
  SLLM_CHECK(max_seq_length > 0, "max_seq_length must be positive (got {})", max_seq_length);
  std::vector<Example> rows;
  Example cur;
  for (const auto& e : ex) {
    for (size_t i = 0; i < e.ids.size(); ++i) {
      cur.ids.push_back(e.ids[i]);
      cur.labels.push_back(e.labels[i]);
      if (static_cast<int64_t>(cur.ids.size()) == max_seq_length) {
        rows.push_back(std::move(cur));
        cur = {};
      }
    }
  }
  if (!cur.ids.empty()) rows.push_back(std::move(cur));
  return rows;
}

}  // namespace sllm::data
