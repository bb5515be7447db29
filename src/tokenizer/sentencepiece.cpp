// SentencePiece tokenizer.model (Llama-2 / Mistral) through libsentencepiece. Special tokens are
// split out first (as llama.cpp and HF do) and each text segment is encoded by SentencePiece.
#include <sentencepiece_processor.h>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tokenizer/bpe.h"

namespace sllm::tok {

namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁"

// "<0x0A>" -> '\n'
bool parse_byte_piece(const std::string& p, char* out) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return false;
  unsigned v = 0;
  for (int i = 3; i < 5; ++i) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= c - '0';
    else if (c >= 'A' && c <= 'F')
      v |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f')
      v |= c - 'a' + 10;
    else
      return false;
  }
  *out = static_cast<char>(v);
  return true;
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
  return s;
}

}  // namespace

struct SpTokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

SpTokenizer::SpTokenizer(const std::string& model_path, const std::string& config_path)
    : impl_(std::make_unique<Impl>()) {
  std::ifstream f(model_path, std::ios::binary);
  SLLM_CHECK(f.good(), "tokenizer: cannot open SentencePiece model '{}'", model_path);
  std::stringstream ss;
  ss << f.rdbuf();
  serialized_ = ss.str();
  auto st = impl_->sp.LoadFromSerializedProto(serialized_);
  SLLM_CHECK(st.ok(), "tokenizer: '{}' is not a valid SentencePiece model: {}", model_path,
             st.ToString());

  auto& sp = impl_->sp;
  const int n = sp.GetPieceSize();
  pieces_.resize(n);
  bytes_.resize(n);
  special_.assign(n, 0);
  std::vector<AddedToken> added;
  for (int i = 0; i < n; ++i) {
    pieces_[i] = sp.IdToPiece(i);
    piece_to_id_[pieces_[i]] = i;
    char b;
    if (sp.IsControl(i) || sp.IsUnknown(i)) {
      special_[i] = 1;
      bytes_[i] = pieces_[i];
      AddedToken a;
      a.id = i;
      a.content = pieces_[i];
      if (!a.content.empty()) added.push_back(std::move(a));
    } else if (sp.IsByte(i) && parse_byte_piece(pieces_[i], &b)) {
      bytes_[i] = std::string(1, b);
    } else {
      bytes_[i] = replace_all(pieces_[i], kSpaceMarker, " ");
    }
  }
  added_ = AddedTokenSplitter(std::move(added));
  // The model's normalizer spec is not exposed; probe whether it prepends the "▁" dummy prefix.
  auto probe = sp.EncodeAsPieces("a");
  dummy_prefix_ = !probe.empty() && probe[0].starts_with(kSpaceMarker);

  bos_id = sp.bos_id();
  eos_id = sp.eos_id();
  pad_id = sp.pad_id();
  unk_id = sp.unk_id();
  add_bos = true;
  if (!config_path.empty()) {
    auto cfg = read_tokenizer_config(config_path);
    auto resolve = [&](const std::optional<std::string>& s, int32_t& id) {
      if (!s) return;
      auto it = piece_to_id_.find(*s);
      if (it != piece_to_id_.end()) id = it->second;
    };
    resolve(cfg.bos, bos_id);
    resolve(cfg.eos, eos_id);
    resolve(cfg.pad, pad_id);
    resolve(cfg.unk, unk_id);
    if (cfg.add_bos) add_bos = *cfg.add_bos;
    chat_template = cfg.chat_template;
  }
  fill_stop_ids(*this);
}

SpTokenizer::~SpTokenizer() = default;

std::vector<int32_t> SpTokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  std::vector<int> ids;
  for (const auto& seg : added_.split(text, parse_special)) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    // Each text segment gets SentencePiece's dummy prefix, matching llama.cpp (space after a
    // special token) and HF's legacy Llama tokenizers.
    ids.clear();
    auto st = impl_->sp.Encode(seg.text, &ids);
    SLLM_CHECK(st.ok(), "tokenizer: SentencePiece encode failed: {}", st.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }
  return out;
}

std::string SpTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  for (int32_t id : ids) {
    SLLM_CHECK(id >= 0 && id < vocab_size(), "tokenizer: cannot decode id {} (vocab size {})", id,
               vocab_size());
    if (skip_special && special_[id]) continue;
    out += bytes_[id];
  }
  // The dummy prefix added at encode time is removed once, at the start (HF Strip decoder).
  if (dummy_prefix_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

std::string SpTokenizer::piece(int32_t id) const {
  SLLM_CHECK(id >= 0 && id < vocab_size(), "tokenizer: token id {} out of range", id);
  return pieces_[id];
}

std::string SpTokenizer::token_bytes(int32_t id) const {
  SLLM_CHECK(id >= 0 && id < vocab_size(), "tokenizer: token id {} out of range", id);
  return bytes_[id];
}

std::optional<int32_t> SpTokenizer::token_to_id(std::string_view p) const {
  auto it = piece_to_id_.find(std::string(p));
  if (it == piece_to_id_.end()) return std::nullopt;
  return it->second;
}

bool SpTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[id];
}

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path,
                                              const std::string& tokenizer_config_path) {
  return std::make_unique<SpTokenizer>(model_path, tokenizer_config_path);
}

}  // namespace sllm::tok
