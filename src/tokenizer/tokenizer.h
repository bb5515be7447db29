// Tokenizers: byte-level BPE (GGUF vocab or HF tokenizer.json) and SentencePiece, behind one
// interface, plus a streaming UTF-8-safe decoder.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sllm::tok {

struct ChatMessage {
  std::string role, content;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Encodes text into ids. No BOS/EOS added here. If parse_special, special tokens written
  // literally in the text (e.g. "<|im_start|>") become their ids; otherwise they are tokenized as
  // plain text. Non-special added (user-defined) tokens are always matched, as in HF and llama.cpp.
  virtual std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const = 0;
  // Decodes ids to bytes (normally UTF-8). Invalid UTF-8 is kept as raw bytes; special tokens are
  // rendered as their text unless skip_special.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const = 0;
  virtual std::string piece(int32_t id) const = 0;        // vocab string as stored (e.g. "Ġthe")
  virtual std::string token_bytes(int32_t id) const = 0;  // raw bytes that id decodes to
  virtual std::optional<int32_t> token_to_id(std::string_view piece) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual bool is_special(int32_t id) const = 0;

  // Special ids; -1 when absent.
  int32_t bos_id = -1, eos_id = -1, pad_id = -1, unk_id = -1;
  bool add_bos = false;           // whether prompts get a BOS prepended
  std::vector<int32_t> stop_ids;  // eos + end-of-turn tokens present in the vocab
  std::string chat_template;      // raw jinja template text from the model, may be empty
};

// Byte-level BPE from the vocab/merges arrays of a GGUF file (tokenizer.ggml.model == "gpt2").
struct GgufVocab {
  std::vector<std::string> tokens;   // tokenizer.ggml.tokens
  std::vector<int32_t> token_types;  // tokenizer.ggml.token_type (1 normal, 2 unknown, 3 control,
                                     // 4 user-defined, 5 unused, 6 byte), may be empty
  std::vector<std::string> merges;   // "a b"
  std::string pre;                   // tokenizer.ggml.pre: "smollm", "llama-bpe", "qwen2", ...
  int32_t bos_id = -1, eos_id = -1, pad_id = -1, unk_id = -1;
  bool add_bos = false;
  std::string chat_template;
};
std::unique_ptr<Tokenizer> make_bpe_from_gguf(const GgufVocab& v);

// Hugging Face tokenizer.json (BPE with a ByteLevel pre-tokenizer/decoder), plus optional
// tokenizer_config.json (bos/eos/pad/unk strings, add_bos_token, chat_template).
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& tokenizer_json_path,
                                               const std::string& tokenizer_config_path);
// SentencePiece tokenizer.model (Llama-2/Mistral style); add_bos true unless the config says no.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path,
                                              const std::string& tokenizer_config_path);
// HF model dir: tokenizer.json preferred (falls back to tokenizer.model when tokenizer.json is not
// byte-level BPE), else tokenizer.model. Also reads generation_config.json eos ids into stop_ids.
std::unique_ptr<Tokenizer> load_tokenizer_dir(const std::string& dir);
// Writes tokenizer.json + tokenizer_config.json that HF tokenizers/transformers load and tokenize
// identically. Byte-level BPE only; a SentencePiece tokenizer is written as tokenizer.model.
void save_hf_tokenizer(const Tokenizer& t, const std::string& dir);

// Incremental UTF-8-safe decoding for streaming: push ids, get the newly completed text. Never
// splits a multi-byte character (an incomplete tail is held back); bytes that can never form a
// character become U+FFFD. flush() returns what remains, incomplete tail as U+FFFD.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& t, bool skip_special = true);
  std::string push(int32_t id);
  std::string flush();
  void reset() { pending_.clear(); }

 private:
  std::string drain(bool final);
  const Tokenizer* tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace sllm::tok
