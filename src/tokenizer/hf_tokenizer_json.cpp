// Hugging Face tokenizer.json / tokenizer_config.json: loading byte-level BPE, writing it back out,
// and picking a tokenizer from a model directory.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "tokenizer/bpe.h"

namespace sllm::tok {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

json read_json(const std::string& path) {
  std::ifstream f(path);
  SLLM_CHECK(f.good(), "tokenizer: cannot open '{}'", path);
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    SLLM_FAIL("tokenizer: '{}' is not valid JSON: {}", path, e.what());
  }
}

// Token fields in tokenizer_config.json are a string or an AddedToken object {"content": ...}.
std::optional<std::string> token_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return std::nullopt;
}

SplitBehavior parse_behavior(const std::string& s, const std::string& path) {
  if (s == "Removed") return SplitBehavior::removed;
  if (s == "Isolated") return SplitBehavior::isolated;
  if (s == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (s == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (s == "Contiguous") return SplitBehavior::contiguous;
  SLLM_FAIL("tokenizer: '{}': unknown Split behavior '{}'", path, s);
}

const char* behavior_name(SplitBehavior b) {
  switch (b) {
    case SplitBehavior::removed:
      return "Removed";
    case SplitBehavior::isolated:
      return "Isolated";
    case SplitBehavior::merged_with_previous:
      return "MergedWithPrevious";
    case SplitBehavior::merged_with_next:
      return "MergedWithNext";
    case SplitBehavior::contiguous:
      return "Contiguous";
  }
  return "Isolated";
}

void parse_pretok(const json& j, const std::string& path, std::vector<PreTokStep>& out) {
  const std::string type = j.value("type", "");
  PreTokStep st;
  if (type == "Sequence") {
    for (const auto& sub : j.at("pretokenizers")) parse_pretok(sub, path, out);
    return;
  } else if (type == "ByteLevel") {
    st.kind = PreTokStep::Kind::byte_level;
    st.add_prefix_space = j.value("add_prefix_space", true);
    st.use_regex = j.value("use_regex", true);
  } else if (type == "Split") {
    st.kind = PreTokStep::Kind::split;
    const auto& pat = j.at("pattern");
    if (pat.contains("Regex")) {
      st.pattern = pat["Regex"].get<std::string>();
    } else if (pat.contains("String")) {
      st.pattern = pat["String"].get<std::string>();
      st.is_regex = false;
    } else {
      SLLM_FAIL("tokenizer: '{}': Split pattern must be Regex or String", path);
    }
    st.behavior = parse_behavior(j.value("behavior", "Isolated"), path);
    st.invert = j.value("invert", false);
  } else if (type == "Digits") {
    st.kind = PreTokStep::Kind::digits;
    st.individual_digits = j.value("individual_digits", false);
  } else {
    SLLM_FAIL(
        "tokenizer: '{}': pre_tokenizer type '{}' is not supported (supported: ByteLevel, Split, "
        "Digits, Sequence)",
        path, type);
  }
  out.push_back(std::move(st));
}

json pretok_to_json(const std::vector<PreTokStep>& steps) {
  json arr = json::array();
  for (const auto& s : steps) {
    switch (s.kind) {
      case PreTokStep::Kind::byte_level:
        arr.push_back({{"type", "ByteLevel"},
                       {"add_prefix_space", s.add_prefix_space},
                       {"trim_offsets", true},
                       {"use_regex", s.use_regex}});
        break;
      case PreTokStep::Kind::split:
        arr.push_back({{"type", "Split"},
                       {"pattern", {{s.is_regex ? "Regex" : "String", s.pattern}}},
                       {"behavior", behavior_name(s.behavior)},
                       {"invert", s.invert}});
        break;
      case PreTokStep::Kind::digits:
        arr.push_back({{"type", "Digits"}, {"individual_digits", s.individual_digits}});
        break;
    }
  }
  if (arr.size() == 1) return arr[0];
  return {{"type", "Sequence"}, {"pretokenizers", arr}};
}

// Only decoders that amount to "ByteLevel" keep decode() byte-exact.
void check_decoder(const json& j, const std::string& path) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    for (const auto& sub : j.at("decoders")) check_decoder(sub, path);
    return;
  }
  SLLM_FAIL("tokenizer: '{}': decoder type '{}' is not supported (byte-level BPE only)", path,
            type);
}

// Returns whether the text is NFC-normalized first (the only normalizer supported).
bool parse_normalizer(const json& j, const std::string& path) {
  if (j.is_null()) return false;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    bool nfc = false;
    for (const auto& sub : j.at("normalizers")) nfc |= parse_normalizer(sub, path);
    return nfc;
  }
  if (type == "NFC") return true;
  SLLM_FAIL("tokenizer: '{}': normalizer type '{}' is not supported (only NFC is)", path, type);
}

// A BOS token added by a TemplateProcessing post-processor ("single" starting with it).
std::optional<std::string> post_processor_bos(const json& j) {
  if (!j.is_object()) return std::nullopt;
  const std::string type = j.value("type", "");
  if (type == "Sequence" && j.contains("processors")) {
    for (const auto& p : j["processors"])
      if (auto b = post_processor_bos(p)) return b;
    return std::nullopt;
  }
  if (type != "TemplateProcessing" || !j.contains("single") || j["single"].empty())
    return std::nullopt;
  const auto& first = j["single"][0];
  if (first.contains("SpecialToken")) return first["SpecialToken"].value("id", "");
  return std::nullopt;
}

}  // namespace

HfTokenizerConfig read_tokenizer_config(const std::string& path) {
  HfTokenizerConfig cfg;
  json j = read_json(path);
  SLLM_CHECK(j.is_object(), "tokenizer: '{}' must hold a JSON object", path);
  cfg.bos = token_field(j, "bos_token");
  cfg.eos = token_field(j, "eos_token");
  cfg.pad = token_field(j, "pad_token");
  cfg.unk = token_field(j, "unk_token");
  if (j.contains("add_bos_token") && j["add_bos_token"].is_boolean())
    cfg.add_bos = j["add_bos_token"].get<bool>();
  if (auto it = j.find("chat_template"); it != j.end()) {
    if (it->is_string()) {
      cfg.chat_template = it->get<std::string>();
    } else if (it->is_array()) {  // named templates: use "default"
      for (const auto& t : *it)
        if (t.value("name", "") == "default") cfg.chat_template = t.value("template", "");
    }
  }
  return cfg;
}

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path,
                                               const std::string& config_path) {
  const json j = read_json(path);
  SLLM_CHECK(j.is_object() && j.contains("model"), "tokenizer: '{}' has no \"model\" section",
             path);
  const json& m = j["model"];
  const std::string type = m.value("type", m.contains("merges") ? "BPE" : "");
  SLLM_CHECK(type == "BPE", "tokenizer: '{}': model type '{}' is not supported (BPE only)", path,
             type);
  auto null_or_empty = [&](const char* k) {
    return !m.contains(k) || m[k].is_null() ||
           (m[k].is_string() && m[k].get<std::string>().empty());
  };
  SLLM_CHECK(null_or_empty("continuing_subword_prefix") && null_or_empty("end_of_word_suffix"),
             "tokenizer: '{}': BPE continuing_subword_prefix/end_of_word_suffix are not supported",
             path);
  SLLM_CHECK(!m.value("byte_fallback", false),
             "tokenizer: '{}': byte_fallback BPE (SentencePiece-style) is not supported; use "
             "tokenizer.model",
             path);
  if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0)
    log::warn("tokenizer: '{}': BPE dropout ignored", path);

  const bool nfc = parse_normalizer(j.value("normalizer", json()), path);
  check_decoder(j.value("decoder", json()), path);

  BpeData d;
  d.nfc = nfc;
  SLLM_CHECK(j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null(),
             "tokenizer: '{}': no pre_tokenizer (byte-level BPE needs a ByteLevel pre-tokenizer)",
             path);
  parse_pretok(j["pre_tokenizer"], path, d.pretok);
  int n_byte_level = 0;
  for (const auto& s : d.pretok) n_byte_level += s.kind == PreTokStep::Kind::byte_level;
  SLLM_CHECK(n_byte_level == 1 && d.pretok.back().kind == PreTokStep::Kind::byte_level,
             "tokenizer: '{}': the pre_tokenizer must end with exactly one ByteLevel step", path);

  // Vocab + added tokens -> dense id table.
  SLLM_CHECK(m.contains("vocab") && m["vocab"].is_object(), "tokenizer: '{}': model.vocab missing",
             path);
  int64_t max_id = -1;
  for (const auto& [piece, id] : m["vocab"].items())
    max_id = std::max<int64_t>(max_id, id.get<int64_t>());
  const json added = j.value("added_tokens", json::array());
  for (const auto& a : added) max_id = std::max<int64_t>(max_id, a.at("id").get<int64_t>());
  SLLM_CHECK(max_id >= 0 && max_id < (int64_t{1} << 31), "tokenizer: '{}': empty or invalid vocab",
             path);
  d.pieces.assign(max_id + 1, std::string());
  d.kinds.assign(max_id + 1, TokenKind::normal);
  for (const auto& [piece, id] : m["vocab"].items()) {
    int64_t i = id.get<int64_t>();
    SLLM_CHECK(i >= 0, "tokenizer: '{}': negative id for '{}'", path, piece);
    d.pieces[i] = piece;
  }
  for (const auto& a : added) {
    AddedToken t;
    t.id = a.at("id").get<int32_t>();
    t.content = a.at("content").get<std::string>();
    t.special = a.value("special", false);
    t.lstrip = a.value("lstrip", false);
    t.rstrip = a.value("rstrip", false);
    t.single_word = a.value("single_word", false);
    t.normalized = a.value("normalized", !t.special);
    d.pieces[t.id] = t.content;
    d.kinds[t.id] = t.special ? TokenKind::control : TokenKind::user_defined;
    d.added.push_back(std::move(t));
  }

  if (m.contains("merges")) {
    for (const auto& mg : m["merges"]) {
      if (mg.is_string()) {
        const auto s = mg.get<std::string>();
        size_t pos = s.find(' ', 1);
        SLLM_CHECK(pos != std::string::npos, "tokenizer: '{}': malformed merge '{}'", path, s);
        d.merges.emplace_back(s.substr(0, pos), s.substr(pos + 1));
      } else {
        SLLM_CHECK(mg.is_array() && mg.size() == 2, "tokenizer: '{}': malformed merge {}", path,
                   mg.dump());
        d.merges.emplace_back(mg[0].get<std::string>(), mg[1].get<std::string>());
      }
    }
  }
  d.ignore_merges = m.value("ignore_merges", false);

  auto find_id = [&](const std::optional<std::string>& s) -> int32_t {
    if (!s) return -1;
    for (const auto& a : d.added)
      if (a.content == *s) return a.id;
    auto it = m["vocab"].find(*s);
    return it == m["vocab"].end() ? -1 : it->get<int32_t>();
  };
  if (m.contains("unk_token") && m["unk_token"].is_string())
    d.unk_id = find_id(m["unk_token"].get<std::string>());

  auto post_bos = post_processor_bos(j.value("post_processor", json()));
  HfTokenizerConfig cfg;
  if (!config_path.empty()) cfg = read_tokenizer_config(config_path);
  d.bos_id = find_id(cfg.bos ? cfg.bos : post_bos);
  d.eos_id = find_id(cfg.eos);
  if (cfg.pad) d.pad_id = find_id(cfg.pad);
  if (cfg.unk) d.unk_id = find_id(cfg.unk);
  if (d.eos_id < 0 && !cfg.eos) {
    // No config: fall back to the usual end-of-text token if it is a special token.
    for (const char* s : {"<|endoftext|>", "<|end_of_text|>", "</s>"}) {
      int32_t id = find_id(std::string(s));
      if (id >= 0 && d.kinds[id] == TokenKind::control) {
        d.eos_id = id;
        break;
      }
    }
  }
  d.add_bos = cfg.add_bos ? *cfg.add_bos : post_bos.has_value();
  d.chat_template = cfg.chat_template;
  return std::make_unique<BpeTokenizer>(std::move(d));
}

// ---------------------------------------------------------------- writing

namespace {

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  SLLM_CHECK(f.good(), "tokenizer: cannot write '{}'", p.string());
  f << text;
  SLLM_CHECK(f.good(), "tokenizer: write to '{}' failed", p.string());
}

json piece_or_null(const Tokenizer& t, int32_t id) {
  if (id < 0 || id >= t.vocab_size()) return nullptr;
  return t.piece(id);
}

json base_config(const Tokenizer& t) {
  json c = json::object();
  c["add_bos_token"] = t.add_bos;
  c["add_eos_token"] = false;
  c["bos_token"] = piece_or_null(t, t.bos_id);
  c["eos_token"] = piece_or_null(t, t.eos_id);
  c["pad_token"] = piece_or_null(t, t.pad_id);
  c["unk_token"] = piece_or_null(t, t.unk_id);
  c["clean_up_tokenization_spaces"] = false;
  if (!t.chat_template.empty()) c["chat_template"] = t.chat_template;
  return c;
}

std::string bpe_tokenizer_json(const BpeTokenizer& t) {
  const BpeData& d = t.data();
  const auto q = [](const std::string& s) { return json(s).dump(); };  // JSON string literal

  json added = json::array();
  for (const auto& a : d.added)
    added.push_back({{"id", a.id},
                     {"content", a.content},
                     {"single_word", a.single_word},
                     {"lstrip", a.lstrip},
                     {"rstrip", a.rstrip},
                     {"normalized", a.normalized},
                     {"special", a.special}});

  json post = nullptr;
  if (t.add_bos && t.bos_id >= 0) {
    const std::string bos = d.pieces[t.bos_id];
    auto special = [&](int type_id) {
      return json{{"SpecialToken", {{"id", bos}, {"type_id", type_id}}}};
    };
    auto seq = [&](const char* id, int type_id) {
      return json{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
    };
    post = {{"type", "TemplateProcessing"},
            {"single", json::array({special(0), seq("A", 0)})},
            {"pair", json::array({special(0), seq("A", 0), special(1), seq("B", 1)})},
            {"special_tokens", {{bos, {{"id", bos}, {"ids", {t.bos_id}}, {"tokens", {bos}}}}}}};
  }
  json decoder = {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}};

  // Vocab and merges are streamed by hand: building a 100k-entry ordered JSON object is slow.
  std::string out;
  out.reserve(d.pieces.size() * 24 + d.merges.size() * 20);
  out += "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n";
  out += "  \"added_tokens\": " + added.dump() + ",\n";
  out += d.nfc ? "  \"normalizer\": {\"type\": \"NFC\"},\n" : "  \"normalizer\": null,\n";
  out += "  \"pre_tokenizer\": " + pretok_to_json(d.pretok).dump() + ",\n";
  out += "  \"post_processor\": " + post.dump() + ",\n";
  out += "  \"decoder\": " + decoder.dump() + ",\n";
  out += "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n";
  out +=
      "    \"unk_token\": " + (t.unk_id >= 0 ? q(d.pieces[t.unk_id]) : std::string("null")) + ",\n";
  out += "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n";
  out += "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n";
  out += std::string("    \"ignore_merges\": ") + (d.ignore_merges ? "true" : "false") + ",\n";
  out += "    \"vocab\": {";
  bool first = true;
  size_t dropped = 0;
  for (int32_t i = 0; i < static_cast<int32_t>(d.pieces.size()); ++i) {
    const auto& p = d.pieces[i];
    if (p.empty()) continue;
    if (t.token_to_id(p) != i) {  // duplicate piece: JSON keys must be unique
      ++dropped;
      continue;
    }
    out += first ? "\n      " : ",\n      ";
    out += q(p) + ": " + std::to_string(i);
    first = false;
  }
  out += "\n    },\n    \"merges\": [";
  bool tuple_form = false;  // the "a b" form cannot hold pieces with spaces
  for (const auto& [a, b] : d.merges)
    tuple_form |= a.find(' ') != std::string::npos || b.find(' ') != std::string::npos;
  first = true;
  for (const auto& [a, b] : d.merges) {
    // HF rejects merges whose parts or result are missing from the vocab; ours ignored them too.
    if (!t.token_to_id(a) || !t.token_to_id(b) || !t.token_to_id(a + b)) continue;
    out += first ? "\n      " : ",\n      ";
    out += tuple_form ? "[" + q(a) + ", " + q(b) + "]" : q(a + " " + b);
    first = false;
  }
  out += "\n    ]\n  }\n}\n";
  if (dropped)
    log::warn("tokenizer: {} duplicate vocab pieces left out of tokenizer.json", dropped);
  return out;
}

}  // namespace

void save_hf_tokenizer(const Tokenizer& t, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  SLLM_CHECK(!ec, "tokenizer: cannot create directory '{}': {}", dir, ec.message());
  json cfg = base_config(t);
  if (const auto* bpe = dynamic_cast<const BpeTokenizer*>(&t)) {
    write_file(fs::path(dir) / "tokenizer.json", bpe_tokenizer_json(*bpe));
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast";
  } else if (const auto* sp = dynamic_cast<const SpTokenizer*>(&t)) {
    write_file(fs::path(dir) / "tokenizer.model", sp->serialized_model());
    cfg["tokenizer_class"] = "LlamaTokenizer";
    cfg["legacy"] = true;  // dummy prefix after special tokens, as encode() does
  } else {
    SLLM_FAIL("tokenizer: save_hf_tokenizer does not know this tokenizer type");
  }
  write_file(fs::path(dir) / "tokenizer_config.json", cfg.dump(2) + "\n");
}

std::unique_ptr<Tokenizer> load_tokenizer_dir(const std::string& dir) {
  const fs::path d(dir);
  const fs::path tj = d / "tokenizer.json", tm = d / "tokenizer.model";
  const fs::path cfg = d / "tokenizer_config.json";
  const std::string cfg_path = fs::exists(cfg) ? cfg.string() : std::string();
  std::unique_ptr<Tokenizer> t;
  if (fs::exists(tj)) {
    try {
      t = load_tokenizer_json(tj.string(), cfg_path);
    } catch (const Error& e) {
      if (!fs::exists(tm)) throw;
      log::info("tokenizer: {}; using tokenizer.model instead", e.what());
    }
  }
  if (!t && fs::exists(tm)) t = load_sentencepiece(tm.string(), cfg_path);
  SLLM_CHECK(t != nullptr, "tokenizer: '{}' has neither tokenizer.json nor tokenizer.model", dir);

  // generation_config.json may list several end ids (Llama-3-Instruct: end_of_text and eot_id).
  const fs::path gen = d / "generation_config.json";
  if (fs::exists(gen)) {
    json g = read_json(gen.string());
    std::vector<int32_t> ids;
    if (auto it = g.find("eos_token_id"); it != g.end()) {
      if (it->is_number_integer()) ids.push_back(it->get<int32_t>());
      if (it->is_array())
        for (const auto& v : *it)
          if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
    }
    for (int32_t id : ids) {
      if (id < 0 || id >= t->vocab_size()) continue;
      if (t->eos_id < 0) t->eos_id = id;
      if (std::find(t->stop_ids.begin(), t->stop_ids.end(), id) == t->stop_ids.end())
        t->stop_ids.push_back(id);
    }
  }
  return t;
}

}  // namespace sllm::tok
