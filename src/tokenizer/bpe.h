// Internal tokenizer classes: byte-level BPE (GPT-2 style, shared by the GGUF and tokenizer.json
// loaders) and the SentencePiece wrapper, plus helpers shared by the loaders.
#pragma once

#include <array>
#include <mutex>
#include <unordered_map>

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace sllm::tok {

// Mirrors GGUF token types; HF added tokens map to control (special) or user_defined.
enum class TokenKind : uint8_t { normal, unknown, control, user_defined, unused, byte };

// Everything a byte-level BPE tokenizer is built from; kept so save_hf_tokenizer can write it out.
struct BpeData {
  std::vector<std::string> pieces;  // id -> piece as stored ("" = hole, no token with that id)
  std::vector<TokenKind> kinds;     // id -> kind (same size as pieces)
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedToken> added;  // matched in the raw text before pre-tokenization
  std::vector<PreTokStep> pretok;
  bool ignore_merges = false;     // a word that is itself in the vocab skips merging (Llama-3)
  bool added_decode_raw = false;  // llama.cpp: control/user-defined tokens decode as their text
  bool nfc = false;               // tokenizer.json NFC normalizer (Qwen2): text is NFC'd first
  int32_t bos_id = -1, eos_id = -1, pad_id = -1, unk_id = -1;
  bool add_bos = false;
  std::string chat_template;
};

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeData d);

  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const override;
  std::string piece(int32_t id) const override;
  std::string token_bytes(int32_t id) const override;
  std::optional<int32_t> token_to_id(std::string_view piece) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(d_.pieces.size()); }
  bool is_special(int32_t id) const override;

  const BpeData& data() const { return d_; }

 private:
  void encode_word(const std::string& word, std::vector<int32_t>& out) const;
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  BpeData d_;
  std::unordered_map<std::string, int32_t> piece_to_id_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left,right)->(rank,id)
  std::array<int32_t, 256> byte_id_{};                                // id of each single byte
  std::vector<std::string> bytes_;                                    // id -> decoded bytes
  AddedTokenSplitter added_;
  PreTokenizer pretok_;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

// SentencePiece model (libsentencepiece behind a pimpl so its headers stay in one file).
class SpTokenizer final : public Tokenizer {
 public:
  SpTokenizer(const std::string& model_path, const std::string& config_path);
  ~SpTokenizer() override;

  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const override;
  std::string piece(int32_t id) const override;
  std::string token_bytes(int32_t id) const override;
  std::optional<int32_t> token_to_id(std::string_view piece) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  bool is_special(int32_t id) const override;

  const std::string& serialized_model() const { return serialized_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string serialized_;
  std::vector<std::string> pieces_, bytes_;
  std::vector<uint8_t> special_;
  std::unordered_map<std::string, int32_t> piece_to_id_;
  AddedTokenSplitter added_;
  bool dummy_prefix_ = true;
};

// What tokenizer_config.json says (fields absent there stay empty).
struct HfTokenizerConfig {
  std::optional<std::string> bos, eos, pad, unk;
  std::optional<bool> add_bos;
  std::string chat_template;
};
// Reads tokenizer_config.json; errors name the file.
HfTokenizerConfig read_tokenizer_config(const std::string& path);

// GPT-2 byte <-> unicode mapping.
std::string bytes_to_unicode(std::string_view bytes);
// Maps a byte-level piece back to bytes; false if a character is outside the mapping.
bool unicode_to_bytes(std::string_view piece, std::string* out);

// Token texts that end a turn/generation; fill_stop_ids adds those present as special tokens.
extern const std::vector<std::string> kStopTokenTexts;
void fill_stop_ids(Tokenizer& t);

}  // namespace sllm::tok
