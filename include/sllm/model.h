// Loading a model and its tokenizer. A Model is an immutable, reference-counted handle: copies
// share the weights, and any number of threads may use one Model at once (each through its own
// Session). Loading throws sllm::Error with a message naming the file and what to do.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sllm {

struct LoadOptions {
  std::string dtype = "fp32";  // weights/activations: fp32, bf16, fp16
  std::string device = "cpu";  // cpu, cuda, cuda:N
  // "" keeps decoder Linears as stored; "nf4" / "fp4" quantizes dense ones while loading.
  std::string quantize;
  // LoRA adapter directories in the PEFT layout, applied in order.
  std::vector<std::string> adapters;
  int threads = 0;  // CPU threads for this process (0: leave the current setting)
};

struct ChatMessage {
  std::string role;  // system, user, assistant
  std::string content;
};

// A tokenizer: byte-level BPE or SentencePiece, as the model file carries it. Immutable and
// safe to share between threads.
class Tokenizer {
 public:
  // Text -> ids. add_bos: prepend BOS when the model wants one. parse_special: special tokens
  // written in the text ("<|im_start|>") become their ids.
  std::vector<int32_t> encode(std::string_view text, bool add_bos = false,
                              bool parse_special = false) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  // Messages -> ids with the model's chat template and the assistant prompt (BOS included
  // where the model wants it). Throws when the model has no chat template.
  std::vector<int32_t> encode_chat(const std::vector<ChatMessage>& messages) const;
  bool has_chat_template() const;
  std::string piece(int32_t id) const;  // the vocabulary entry as stored
  int32_t vocab_size() const;
  int32_t bos_id() const;  // -1 when absent
  int32_t eos_id() const;  // -1 when absent

  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

 private:
  std::shared_ptr<const Impl> impl_;
};

struct ModelInfo {
  std::string name;  // general.name, or the directory name
  std::string path;
  std::string file_format;  // gguf | hf
  std::string architecture;
  int64_t parameters = 0;
  int64_t layers = 0, hidden_size = 0, heads = 0, kv_heads = 0, vocab_size = 0;
  int64_t max_context = 0;
  std::string dtype, device;
  std::map<std::string, int64_t>
      weight_formats;  // stored format -> tensor count (as in `sllm info`)
};

class Model {
 public:
  // A GGUF file or a Hugging Face model directory (dense, or a GPTQ/AWQ/bitsandbytes layout).
  static Model load(const std::string& path, const LoadOptions& options = {});

  ModelInfo info() const;
  Tokenizer tokenizer() const;

  struct Impl;
  explicit Model(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  const Impl& impl() const { return *impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

std::string version();  // "0.1.0"

}  // namespace sllm
