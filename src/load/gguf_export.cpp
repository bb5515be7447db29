#include "load/gguf_export.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/log.h"
#include "io/gguf.h"
#include "io/gguf_write.h"
#include "kernels/cpu/gguf_dequant.h"
#include "kernels/cpu/gguf_quant.h"
#include "tokenizer/gguf_vocab.h"

namespace fs = std::filesystem;

namespace sllm::load {
namespace {

namespace kc = sllm::kernels::cpu;
using V = io::GgufValueType;

struct FileType {
  const char* name;
  uint32_t ftype;  // llama.cpp's general.file_type
  uint32_t ggml;   // the GGML type of the Linears (before the per-tensor recipe and fallbacks)
  bool k_mix;      // llama.cpp's Q4_K_M choices for attn_v / ffn_down
};
constexpr FileType kFileTypes[] = {
    {"f32", 0, 0, false},    {"f16", 1, 1, false},    {"q8_0", 7, 8, false},
    {"q4_0", 2, 2, false},   {"q4_1", 3, 3, false},   {"q5_0", 8, 6, false},
    {"q5_1", 9, 7, false},   {"q4_k", 14, 12, false}, {"q5_k", 16, 13, false},
    {"q6_k", 18, 14, false}, {"q4_k_m", 15, 12, true}};
constexpr uint32_t kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14;

const FileType& file_type(const std::string& type) {
  for (const auto& t : kFileTypes)
    if (type == t.name) return t;
  SLLM_FAIL(
      "unknown GGUF type '{}': use f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k or "
      "q4_k_m",
      type);
}

bool is_k(uint32_t t) { return t == kQ4_K || t == kQ5_K || t == kQ6_K; }

// llama.cpp's layers that get more bits under Q4_K_M: the first and last eighth, and every third
// one between.
bool use_more_bits(int64_t i, int64_t n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

// Where a 2-D tensor sits, for the per-tensor type choice.
enum class Role { kHead, kEmbed, kAttnV, kFfnDown, kLinear };

// The GGML type llama.cpp's quantize picks for a tensor of rows of `cols` elements under `ft`
// (the recipe, then its fallbacks for rows that are not whole blocks: K rows that are not whole
// 256-element super-blocks take Q5_0 / Q5_1 / Q8_0 for Q4_K / Q5_K / Q6_K, any other type F16).
// The legacy 4/5-bit types keep the token embedding and output head in Q8_0.
uint32_t tensor_type(const FileType& ft, Role role, int64_t layer, int64_t n_layers, int64_t cols,
                     const std::string& name) {
  const bool k = is_k(ft.ggml);
  uint32_t t = ft.ggml;
  if (role == Role::kHead)
    t = k ? kQ6_K : (ft.ggml == 0 || ft.ggml == 1 || ft.ggml == kQ8_0) ? ft.ggml : kQ8_0;
  else if (role == Role::kEmbed && !k && ft.ggml > 1)
    t = kQ8_0;
  else if (ft.k_mix && (role == Role::kAttnV || role == Role::kFfnDown) &&
           use_more_bits(layer, n_layers))
    t = kQ6_K;
  if (is_k(t) && cols % kc::kQK_K != 0) t = t == kQ4_K ? 6 : t == kQ5_K ? 7 : kQ8_0;
  int64_t block = 1;
  size_t bytes = 0;
  io::ggml_type_layout(t, block, bytes);
  if (cols % block == 0) return t;
  log::warn("GGUF export: '{}' has rows of {} elements, not whole {} blocks: written as F16", name,
            cols, io::ggml_type_name(t));
  return 1;
}

at::Tensor f32(const at::Tensor& t) { return t.to(at::kCPU, at::kFloat).contiguous(); }

// float32 values (contiguous) as GGUF data of a GGML type.
std::string encode(const at::Tensor& w, uint32_t type) {
  const int64_t n = w.numel();
  const int64_t bytes = kc::quant_bytes(type, n);
  SLLM_CHECK(bytes >= 0, "GGUF export: cannot write GGML type {}", io::ggml_type_name(type));
  std::string out(static_cast<size_t>(bytes), '\0');
  kc::quantize(type, w.data_ptr<float>(), out.data(), n);
  return out;
}

// llama.cpp's q/k row order for its RoPE (the inverse of the loader's un-permutation): within each
// head, the rows of the two rotary halves interleave. Rows of blocks permute the same way.
at::Tensor permute_qk(const at::Tensor& w, int64_t heads) {
  const int64_t rows = w.size(0);
  return w.reshape({heads, 2, rows / heads / 2, -1})
      .transpose(1, 2)
      .reshape(w.sizes())
      .contiguous();
}

// Part i of a Linear as GGUF data of `type`: its blocks copied when the Linear keeps them in that
// type, else its weight (dequantized) converted. heads > 0: q/k rows permuted for llama.cpp.
std::string linear_part(const model::Linear& l, int i, uint32_t type, int64_t heads) {
  const bool fused = l.parts.size() > 1;
  const int64_t off = fused ? l.part_offset(i) : 0;
  const int64_t rows = fused ? l.parts[i].rows : l.out_features();
  const auto* g = l.get_if<model::GgufFormat>();
  int64_t inside = 0;
  const auto* piece = g ? g->piece_of(off, rows, &inside) : nullptr;
  if (piece != nullptr && static_cast<uint32_t>(piece->type) == type) {
    auto b = piece->blocks.to(at::kCPU).narrow(0, inside, rows).contiguous();
    if (heads > 0) b = permute_qk(b, heads);
    return std::string(reinterpret_cast<const char*>(b.data_ptr<uint8_t>()), b.nbytes());
  }
  auto w = f32(l.dense_part(i));
  if (heads > 0) w = permute_qk(w, heads);
  return encode(w, type);
}

// GGUF names of the Hugging Face modules inside sllm's Linears.
const std::map<std::string, std::string>& gguf_module_names() {
  static const std::map<std::string, std::string> m = {
      {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"}, {"self_attn.o_proj", "attn_output"},
      {"mlp.gate_proj", "ffn_gate"},  {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"}};
  return m;
}

void check_exportable(const model::LlamaModel& mo) {
  const auto& c = mo.config();
  SLLM_CHECK(c.architecture == "llama" || c.architecture == "mistral" || c.architecture == "qwen2",
             "GGUF export writes llama, mistral and qwen2 models; this model is '{}'",
             c.architecture);
  SLLM_CHECK(c.rope_scaling.type == "none" || c.rope_scaling.type == "linear",
             "GGUF export: rope scaling '{}' is not written (llama.cpp needs a rope_freqs tensor "
             "for it); export to a Hugging Face directory (sllm convert --to hf) and use "
             "llama.cpp's convert_hf_to_gguf.py",
             c.rope_scaling.type);
  SLLM_CHECK(!c.attention_bias || c.architecture == "qwen2",
             "GGUF export: q/k/v biases are written for qwen2 models only, this one is '{}'",
             c.architecture);
  for (const auto& L : mo.layers())
    for (const auto& [name, l] : L.linears())
      SLLM_CHECK(l.lora.empty(),
                 "GGUF export: the model carries LoRA adapters; merge them first (sllm merge) "
                 "and convert the merged model");
}

// general.* keys of a GGUF source worth carrying over (names, license, ...), with their types.
void carry_general(const std::string& path, io::GgufWriter& w) {
  const auto f = io::GgufFile::open(path, /*with_data=*/false);
  for (const auto& [key, value] : f.metadata().items()) {
    if (!key.starts_with("general.") || w.has(key)) continue;
    if (key == "general.file_type" || key == "general.quantization_version") continue;
    const auto t = f.value_type(key);
    if (t != V::ARRAY) {
      w.set(key, t, value);
      continue;
    }
    bool strings = true;
    for (const auto& e : value) strings = strings && e.is_string();
    if (strings) w.set(key, V::ARRAY, value, V::STRING);
  }
}

void set_tokenizer(const LoadedModel& m, int64_t vocab_rows, io::GgufWriter& w) {
  auto v = tok::gguf_vocab_of(*m.tokenizer);
  if (m.format == "gguf") {  // the source's own name for the same splitting
    const auto f = io::GgufFile::open(m.path, /*with_data=*/false);
    v.pre = f.get_string_or("tokenizer.ggml.pre", v.pre);
  }
  const auto n = static_cast<int64_t>(v.tokens.size());
  SLLM_CHECK(n <= vocab_rows,
             "GGUF export: the tokenizer has {} tokens but the embedding only {} rows", n,
             vocab_rows);
  for (int64_t i = n; i < vocab_rows; ++i) {  // llama.cpp wants one token per embedding row
    v.tokens.push_back("[PAD" + std::to_string(i) + "]");
    v.token_types.push_back(5);
  }
  const auto& t = *m.tokenizer;
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", v.pre);
  w.set("tokenizer.ggml.tokens", V::ARRAY, v.tokens, V::STRING);
  w.set("tokenizer.ggml.token_type", V::ARRAY, v.token_types, V::INT32);
  w.set("tokenizer.ggml.merges", V::ARRAY, v.merges, V::STRING);
  const std::pair<const char*, int32_t> ids[] = {{"tokenizer.ggml.bos_token_id", t.bos_id},
                                                 {"tokenizer.ggml.eos_token_id", t.eos_id},
                                                 {"tokenizer.ggml.unknown_token_id", t.unk_id},
                                                 {"tokenizer.ggml.padding_token_id", t.pad_id}};
  for (const auto& [key, id] : ids)
    if (id >= 0) w.set_u32(key, static_cast<uint32_t>(id));
  w.set_bool("tokenizer.ggml.add_bos_token", t.add_bos);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
  if (!t.chat_template.empty()) w.set_string("tokenizer.chat_template", t.chat_template);
}

}  // namespace

void check_gguf_export(const std::string& path, const std::string& type) {
  file_type(type);
  SLLM_CHECK(!path.empty(), "give the output file with --out FILE.gguf");
  SLLM_CHECK(!fs::exists(path), "'{}' already exists: give a new output file (none is overwritten)",
             path);
  const auto dir = fs::path(path).parent_path();
  SLLM_CHECK(dir.empty() || fs::is_directory(dir),
             "cannot write '{}': directory '{}' does not exist", path, dir.string());
}

void save_gguf(const LoadedModel& m, const std::string& path, const std::string& type) {
  check_gguf_export(path, type);
  const auto& ft = file_type(type);
  const auto model = m.model;
  const auto& c = model->config();
  check_exportable(*model);

  io::GgufWriter w;
  // llama.cpp's llama architecture (Mistral included) takes q/k rows permuted for its RoPE;
  // qwen2 keeps Hugging Face's order, and its q/k/v biases.
  const std::string a = c.architecture == "qwen2" ? "qwen2" : "llama";
  const bool permute = a == "llama";
  w.set_string("general.architecture", a);
  w.set_string("general.name", m.display_name);
  if (m.format == "gguf") carry_general(m.path, w);
  w.set_u32("general.file_type", ft.ftype);
  w.set_u32("general.quantization_version", 2);
  w.set_u32(a + ".context_length", static_cast<uint32_t>(c.max_position));
  w.set_u32(a + ".embedding_length", static_cast<uint32_t>(c.hidden_size));
  w.set_u32(a + ".block_count", static_cast<uint32_t>(c.num_layers));
  w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(c.num_heads));
  w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(c.num_kv_heads));
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  w.set_f32(a + ".rope.freq_base", static_cast<float>(c.rope_theta));
  w.set_u32(a + ".vocab_size", static_cast<uint32_t>(c.vocab_size));
  w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  if (c.head_dim * c.num_heads != c.hidden_size) {
    w.set_u32(a + ".attention.key_length", static_cast<uint32_t>(c.head_dim));
    w.set_u32(a + ".attention.value_length", static_cast<uint32_t>(c.head_dim));
  }
  if (c.rope_scaling.type == "linear") {
    w.set_string(a + ".rope.scaling.type", "linear");
    w.set_f32(a + ".rope.scaling.factor", static_cast<float>(c.rope_scaling.factor));
  }
  set_tokenizer(m, c.vocab_size, w);

  const int64_t hid = c.hidden_size, n_layers = c.num_layers;
  // A tied embedding is also the output head, and llama.cpp quantizes it as one.
  const uint32_t embd_t = tensor_type(ft, c.tie_embeddings ? Role::kHead : Role::kEmbed, 0,
                                      n_layers, hid, "token_embd.weight");
  w.add_tensor("token_embd.weight", {c.vocab_size, hid}, embd_t, [model, embd_t]() {
    const auto& head = model->lm_head();
    const auto* g = head.get_if<model::GgufFormat>();
    if (model->config().tie_embeddings && g && g->pieces.size() == 1 &&
        static_cast<uint32_t>(g->pieces[0].type) == embd_t)
      return linear_part(head, 0, embd_t, 0);
    return encode(f32(model->embed()), embd_t);
  });
  auto as_f32 = [](at::Tensor t) { return [t]() { return encode(f32(t), 0); }; };
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const auto& L = model->layers()[i];
    const std::string p = "blk." + std::to_string(i) + ".";
    w.add_tensor(p + "attn_norm.weight", {hid}, 0, as_f32(L.attn_norm));
    w.add_tensor(p + "ffn_norm.weight", {hid}, 0, as_f32(L.ffn_norm));
    for (const auto& [lname, l] : L.linears()) {
      const int nparts = static_cast<int>(std::max<size_t>(l.parts.size(), 1));
      for (int j = 0; j < nparts; ++j) {
        SLLM_CHECK(
            j < static_cast<int>(l.parts.size()) && gguf_module_names().count(l.parts[j].name),
            "GGUF export: layer {} Linear '{}' has no Hugging Face module names", i, lname);
        const auto& part = l.parts[j].name;
        const std::string name = p + gguf_module_names().at(part) + ".weight";
        const int64_t heads = !permute                     ? 0
                              : part == "self_attn.q_proj" ? c.num_heads
                              : part == "self_attn.k_proj" ? c.num_kv_heads
                                                           : 0;
        const Role role = part == "self_attn.v_proj" ? Role::kAttnV
                          : part == "mlp.down_proj"  ? Role::kFfnDown
                                                     : Role::kLinear;
        const uint32_t t = tensor_type(ft, role, i, n_layers, l.in_features(), name);
        const model::Linear* lp = &l;
        w.add_tensor(name, {l.parts[j].rows, l.in_features()}, t,
                     [model, lp, j, t, heads]() { return linear_part(*lp, j, t, heads); });
        if (l.bias.defined())
          w.add_tensor(
              p + gguf_module_names().at(part) + ".bias", {l.parts[j].rows}, 0,
              as_f32(l.bias.narrow(0, l.parts.size() > 1 ? l.part_offset(j) : 0, l.parts[j].rows)));
      }
    }
  }
  w.add_tensor("output_norm.weight", {hid}, 0, as_f32(model->final_norm()));
  if (!c.tie_embeddings) {
    const uint32_t t = tensor_type(ft, Role::kHead, 0, n_layers, hid, "output.weight");
    w.add_tensor("output.weight", {c.vocab_size, hid}, t,
                 [model, t]() { return linear_part(model->lm_head(), 0, t, 0); });
  }
  w.write(path);
}

}  // namespace sllm::load
