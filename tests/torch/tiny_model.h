// Tiny random Llama models built in-process: the default fixture of the libtorch tests.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace sllm::fixtures {

inline model::ModelConfig tiny_config(int64_t kv_heads = 2, bool bias = false, bool tied = true) {
  model::ModelConfig c;
  c.vocab_size = 256 + 3;  // bytes + <|endoftext|> <|im_start|> <|im_end|>
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = kv_heads;
  c.head_dim = 16;
  c.max_position = 256;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000;
  c.tie_embeddings = tied;
  c.attention_bias = bias;
  return c;
}

inline std::shared_ptr<model::LlamaModel> tiny_model(const model::ModelConfig& c,
                                                     uint64_t seed = 0) {
  at::manual_seed(seed);
  auto r = [](std::vector<int64_t> s, double scale = 0.08) { return at::randn(s) * scale; };
  const int64_t H = c.hidden_size, qd = c.num_heads * c.head_dim, kd = c.num_kv_heads * c.head_dim;
  std::vector<model::DecoderLayer> layers;
  const int64_t I = c.intermediate_size;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    model::Linear qkv{r({qd + 2 * kd, H}), c.attention_bias ? r({qd + 2 * kd}) : at::Tensor()};
    qkv.parts = {{"self_attn.q_proj", qd}, {"self_attn.k_proj", kd}, {"self_attn.v_proj", kd}};
    model::Linear o{r({H, qd}), {}}, gate_up{r({2 * I, H}), {}}, down{r({H, I}), {}};
    o.parts = {{"self_attn.o_proj", H}};
    gate_up.parts = {{"mlp.gate_proj", I}, {"mlp.up_proj", I}};
    down.parts = {{"mlp.down_proj", H}};
    layers.push_back({1 + r({H}), 1 + r({H}), qkv, o, gate_up, down});
  }
  auto embed = r({c.vocab_size, H}, 0.5);
  model::Linear head{c.tie_embeddings ? embed : r({c.vocab_size, H}), {}};
  head.parts = {{"lm_head", c.vocab_size}};
  return std::make_shared<model::LlamaModel>(c, embed, std::move(layers), 1 + r({H}), head);
}

// Byte-level vocabulary of 256 byte tokens plus three ChatML special tokens (no merges).
inline std::shared_ptr<tok::Tokenizer> tiny_tokenizer() {
  tok::GgufVocab v;
  // GPT-2 byte-to-unicode mapping, so that every byte is one token
  std::vector<int> bs;
  for (int b = 33; b <= 126; ++b) bs.push_back(b);
  for (int b = 161; b <= 172; ++b) bs.push_back(b);
  for (int b = 174; b <= 255; ++b) bs.push_back(b);
  std::vector<int> cs = bs;
  int n = 0;
  for (int b = 0; b < 256; ++b)
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
      bs.push_back(b);
      cs.push_back(256 + n++);
    }
  v.tokens.resize(256);
  for (size_t i = 0; i < bs.size(); ++i) {
    const int cp = cs[i];
    std::string s;
    if (cp < 0x80)
      s += static_cast<char>(cp);
    else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    v.tokens[bs[i]] = s;
  }
  v.token_types.assign(256, 1);
  for (const char* s : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    v.tokens.push_back(s);
    v.token_types.push_back(3);
  }
  v.pre = "gpt2";
  v.bos_id = 256;
  v.eos_id = 256;
  v.chat_template = "<|im_start|>";
  return std::shared_ptr<tok::Tokenizer>(tok::make_bpe_from_gguf(v));
}

// Pseudo-random token ids in [0, vocab), the same for the same seed.
inline std::vector<int32_t> lcg_tokens(int len, uint64_t seed, int32_t vocab) {
  std::vector<int32_t> p;
  uint64_t x = seed * 2654435761u + 7;
  for (int i = 0; i < len; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    p.push_back(static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab)));
  }
  return p;
}

// A prompt with a repeated stretch, so that n-gram lookup finds matches.
inline std::vector<int32_t> repetitive_prompt(int i) {
  auto a = lcg_tokens(4 + i % 5, 100 + i, 256), b = lcg_tokens(3 + i % 4, 200 + i, 256);
  std::vector<int32_t> p = a;
  p.insert(p.end(), b.begin(), b.end());
  p.insert(p.end(), a.begin(), a.end());
  return p;
}

}  // namespace sllm::fixtures
