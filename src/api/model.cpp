// Model::load and Tokenizer: the public face of load/ and tokenizer/.
#include <ATen/Parallel.h>

#include "api/impl.h"
#include "apps/common.h"
#include "core/error.h"
#include "lora/lora.h"
#include "tokenizer/chat_template.h"

namespace sllm {

std::string version() { return SLLM_VERSION; }

Model Model::load(const std::string& path, const LoadOptions& options) {
  SLLM_CHECK(!path.empty(), "Model::load: no model path given (a GGUF file or an HF directory)");
  SLLM_CHECK(options.threads >= 0, "LoadOptions.threads must be >= 0, got {}", options.threads);
  if (options.threads > 0) at::set_num_threads(options.threads);
  load::LoadOptions o;
  o.dtype = load::parse_dtype(options.dtype);
  o.device = load::parse_device(options.device);
  o.quantize = options.quantize;
  SLLM_CHECK(o.quantize.empty() || o.quantize == "nf4" || o.quantize == "fp4",
             "LoadOptions.quantize must be \"\", \"nf4\" or \"fp4\", got \"{}\"", o.quantize);
  auto impl = std::make_shared<Impl>();
  impl->loaded = load::load_model(path, o);
  for (const auto& dir : options.adapters)
    impl->loaded.model = lora::load_peft(*impl->loaded.model, dir, nullptr);
  impl->dtype = options.dtype;
  impl->device = options.device;
  return Model(std::move(impl));
}

ModelInfo Model::info() const {
  const auto& m = impl_->loaded;
  const auto& c = m.model->config();
  ModelInfo i;
  i.name = m.display_name;
  i.path = m.path;
  i.file_format = m.format;
  i.architecture = c.architecture;
  i.parameters = m.model->num_parameters();
  i.layers = c.num_layers;
  i.hidden_size = c.hidden_size;
  i.heads = c.num_heads;
  i.kv_heads = c.num_kv_heads;
  i.vocab_size = c.vocab_size;
  i.max_context = c.max_position;
  i.dtype = impl_->dtype;
  i.device = impl_->device;
  i.weight_formats = m.file_tensor_types;
  return i;
}

Tokenizer Model::tokenizer() const {
  return Tokenizer(
      std::make_shared<const Tokenizer::Impl>(Tokenizer::Impl{impl_->loaded.tokenizer}));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  std::vector<int32_t> ids;
  const auto& t = *impl_->tok;
  if (add_bos && t.add_bos && t.bos_id >= 0) ids.push_back(t.bos_id);
  auto body = t.encode(text, parse_special);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const int32_t n = impl_->tok->vocab_size();
  for (const auto id : ids)
    SLLM_CHECK(id >= 0 && id < n, "Tokenizer::decode: id {} is outside the vocabulary [0, {})", id,
               n);
  return impl_->tok->decode(ids, skip_special);
}

std::vector<int32_t> Tokenizer::encode_chat(const std::vector<ChatMessage>& messages) const {
  SLLM_CHECK(has_chat_template(),
             "Tokenizer::encode_chat: this model has no chat template; encode a plain prompt");
  SLLM_CHECK(!messages.empty(), "Tokenizer::encode_chat: no messages");
  std::vector<tok::ChatMessage> msgs;
  for (const auto& m : messages) msgs.push_back({m.role, m.content});
  return apps::encode_chat(*impl_->tok, tok::detect_chat_template(*impl_->tok), msgs);
}

bool Tokenizer::has_chat_template() const { return !impl_->tok->chat_template.empty(); }
std::string Tokenizer::piece(int32_t id) const {
  SLLM_CHECK(id >= 0 && id < vocab_size(), "Tokenizer::piece: id {} is outside the vocabulary", id);
  return impl_->tok->piece(id);
}
int32_t Tokenizer::vocab_size() const { return impl_->tok->vocab_size(); }
int32_t Tokenizer::bos_id() const { return impl_->tok->bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->tok->eos_id; }

}  // namespace sllm
