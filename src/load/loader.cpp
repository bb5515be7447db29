#include "load/loader.h"

#include <ATen/ATen.h>

#include <fmt/ranges.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "io/atomic_dir.h"
#include "io/atomic_write.h"
#include "io/gguf.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "load/bnb_layout.h"
#include "load/intq_layout.h"
#include "load/quant_layout.h"
#include "load/tensor_io.h"
#include "ops/cuda_plugin.h"
#include "ops/gguf.h"
#include "quant/nf4.h"

namespace fs = std::filesystem;

namespace sllm::load {
namespace {

// Copies (and converts) a file tensor into an owned fp32 tensor in row-major shape.
at::Tensor f32_from_view(const io::TensorView& v) {
  if (v.dtype == io::DType::gguf_quant || v.ggml_type != 0) {
    auto t = at::empty(v.shape, at::kFloat);
    io::dequantize_to_f32(v, t.data_ptr<float>());
    return t;
  }
  SLLM_CHECK(v.dtype == io::DType::f32 || v.dtype == io::DType::f16 || v.dtype == io::DType::bf16 ||
                 v.dtype == io::DType::f64,
             "tensor '{}' has dtype {}, expected a float type", v.name, io::dtype_name(v.dtype));
  return tensor_from_view(v).to(at::kFloat);
}

// llama.cpp stores Llama q/k rows interleaved for its RoPE kernel; restore HF's order.
at::Tensor unpermute_qk(const at::Tensor& w, int64_t heads) {
  const int64_t rows = w.size(0);
  return w.reshape({heads, rows / heads / 2, 2, -1}).transpose(1, 2).reshape(w.sizes());
}

struct TensorSource {
  virtual ~TensorSource() = default;
  virtual const io::TensorView* find(const std::string& name) const = 0;
  at::Tensor get(const std::string& name, std::vector<int64_t> shape) const {
    const auto* v = find(name);
    SLLM_CHECK(v, "{}: tensor '{}' is missing", where, name);
    SLLM_CHECK(v->shape == shape, "{}: tensor '{}' has shape [{}], expected [{}]", where, name,
               fmt::join(v->shape, ", "), fmt::join(shape, ", "));
    auto t = f32_from_view(*v);
    io::MappedFile::drop_pages(v->data, v->nbytes);
    return t;
  }
  // The safetensors behind a Hugging Face directory (where 4-bit modules can be stored).
  virtual const io::SafetensorsSet* safetensors() const { return nullptr; }
  std::string where;
};

struct GgufSource : TensorSource {
  explicit GgufSource(io::GgufFile f) : file(std::move(f)) { where = file.path(); }
  const io::TensorView* find(const std::string& name) const override { return file.find(name); }
  io::GgufFile file;
};

struct HfSource : TensorSource {
  explicit HfSource(io::SafetensorsSet s, std::string dir) : set(std::move(s)) { where = dir; }
  const io::TensorView* find(const std::string& name) const override { return set.find(name); }
  const io::SafetensorsSet* safetensors() const override { return &set; }
  io::SafetensorsSet set;
};

struct Names {  // tensor names of one checkpoint convention
  std::string embed, final_norm, lm_head;
  std::function<std::string(int64_t, const std::string&)> layer;
};

Names gguf_names() {
  static const std::map<std::string, std::string> m = {{"attn_norm", "attn_norm.weight"},
                                                       {"ffn_norm", "ffn_norm.weight"},
                                                       {"q", "attn_q"},
                                                       {"k", "attn_k"},
                                                       {"v", "attn_v"},
                                                       {"o", "attn_output.weight"},
                                                       {"gate", "ffn_gate.weight"},
                                                       {"up", "ffn_up.weight"},
                                                       {"down", "ffn_down.weight"}};
  return {
      "token_embd.weight", "output_norm.weight", "output.weight",
      [](int64_t i, const std::string& k) { return "blk." + std::to_string(i) + "." + m.at(k); }};
}

Names hf_names() {
  static const std::map<std::string, std::string> m = {
      {"attn_norm", "input_layernorm.weight"},
      {"ffn_norm", "post_attention_layernorm.weight"},
      {"q", "self_attn.q_proj"},
      {"k", "self_attn.k_proj"},
      {"v", "self_attn.v_proj"},
      {"o", "self_attn.o_proj.weight"},
      {"gate", "mlp.gate_proj.weight"},
      {"up", "mlp.up_proj.weight"},
      {"down", "mlp.down_proj.weight"}};
  return {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
          [](int64_t i, const std::string& k) {
            return "model.layers." + std::to_string(i) + "." + m.at(k);
          }};
}

// A Linear over GGUF blocks as stored, when every part's file tensor is a type Linears keep
// (ops::gguf_linear_type: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K); std::nullopt otherwise.
// Parts of different types (a Q4_K_M file's q|k|v) become pieces, one per run of one type.
// permute[i]: part i's rows are llama.cpp's q/k order, restored on the rows of blocks (a row
// permutation, so the bytes stay exact).
std::optional<model::Linear> gguf_blocks_linear(const TensorSource& src,
                                                const std::vector<std::string>& names,
                                                const std::vector<std::string>& tensors,
                                                const std::vector<std::vector<int64_t>>& shapes,
                                                const std::vector<int64_t>& permute_heads,
                                                bool q8_act) {
  std::vector<const io::TensorView*> views;
  for (const auto& t : tensors) {
    const auto* v = src.find(t);
    if (v == nullptr || !ops::gguf_linear_type(v->ggml_type)) return std::nullopt;
    views.push_back(v);
  }
  std::vector<model::LinearPart> parts;
  std::vector<at::Tensor> rows;
  int64_t out = 0;
  const int64_t in = shapes[0][1];
  for (size_t i = 0; i < views.size(); ++i) {
    const auto* v = views[i];
    SLLM_CHECK(v->shape == shapes[i], "{}: tensor '{}' has shape [{}], expected [{}]", src.where,
               v->name, fmt::join(v->shape, ", "), fmt::join(shapes[i], ", "));
    const int64_t r = shapes[i][0];
    SLLM_CHECK(r > 0 && v->nbytes % static_cast<size_t>(r) == 0,
               "{}: tensor '{}' holds {} bytes, not whole rows of blocks", src.where, v->name,
               v->nbytes);
    auto b =
        tensor_from_bytes(v->data, v->nbytes, {r, static_cast<int64_t>(v->nbytes) / r}, at::kByte);
    io::MappedFile::drop_pages(v->data, v->nbytes);
    if (permute_heads[i] > 0) b = unpermute_qk(b, permute_heads[i]).contiguous();
    parts.push_back({names[i], r});
    rows.push_back(b);
    out += r;
  }
  model::GgufFormat g;
  for (size_t i = 0; i < views.size();) {  // runs of parts of one type
    size_t j = i;
    int64_t n = 0;
    std::vector<at::Tensor> run;
    for (; j < views.size() && views[j]->ggml_type == views[i]->ggml_type; ++j) {
      run.push_back(rows[j]);
      n += parts[j].rows;
    }
    g.pieces.push_back(ops::make_gguf_tensors(run.size() == 1 ? run[0] : at::cat(run, 0),
                                              views[i]->ggml_type, n, in, q8_act));
    i = j;
  }
  SLLM_CHECK(g.out() == out, "{}: GGUF pieces hold {} rows, expected {}", src.where, g.out(), out);
  model::Linear l;
  l.weight = std::move(g);
  l.parts = std::move(parts);
  return l;
}

// bnb's double-quant offset is torch's fp32 mean; at::mean reproduces its reduction order.
float torch_mean(const float* x, int64_t n) {
  return at::from_blob(const_cast<float*>(x), {n}, at::kFloat).mean().item<float>();
}

// One decoder Linear from its Hugging Face modules, dense or quantized to 4 bits part by part
// (so that the fp32 copy of only one module is alive at a time).
model::Linear make_linear(const std::vector<std::string>& names,
                          const std::vector<at::Tensor>& weights, at::Tensor bias,
                          const LoadOptions& o) {
  std::vector<model::LinearPart> parts;
  for (size_t i = 0; i < names.size(); ++i) parts.push_back({names[i], weights[i].size(0)});
  auto cv = [&](const at::Tensor& t) { return t.to(o.device, o.dtype).contiguous(); };
  if (bias.defined()) bias = cv(bias);
  if (o.quantize.empty()) {
    model::Linear l{cv(weights.size() == 1 ? weights[0] : at::cat(weights, 0)), bias};
    l.parts = std::move(parts);
    return l;
  }
  quant::Nf4Options qo;
  qo.quant_type = o.quantize;
  qo.blocksize = o.blocksize;
  qo.double_quant = o.double_quant;
  qo.dtype = bnb::dtype_name(o.dtype);  // recorded in the quant state, as bitsandbytes does
  qo.mean = torch_mean;
  std::vector<quant::Nf4Weight> q;
  for (const auto& w : weights) {
    auto wc = w.to(at::kFloat).contiguous();
    q.push_back(quant::quantize_nf4(wc.data_ptr<float>(), wc.sizes().vec(), qo));
  }
  return model::make_nf4_linear(std::move(parts), std::move(q), bias).to(o.device);
}

std::shared_ptr<const model::LlamaModel> build_model(const model::ModelConfig& c,
                                                     const TensorSource& src, const Names& n,
                                                     bool gguf_qk_permuted, const LoadOptions& o,
                                                     const quant_layout::Scheme& scheme = {},
                                                     bool gguf_blocks = false) {
  const int64_t hid = c.hidden_size, qd = c.num_heads * c.head_dim,
                kd = c.num_kv_heads * c.head_dim, I = c.intermediate_size;
  const std::string w = ".weight";
  auto cv = [&](at::Tensor t) { return t.to(o.device, o.dtype).contiguous(); };
  // GGUF blocks kept as stored: the head (tied: the embedding table's blocks) runs on them, and a
  // token table in blocks is looked up row by row, with no dense copy.
  std::optional<model::Linear> stored_head, embed_blocks;
  if (gguf_blocks) {
    stored_head = gguf_blocks_linear(src, {"lm_head"}, {c.tie_embeddings ? n.embed : n.lm_head},
                                     {{c.vocab_size, hid}}, {0}, o.gguf_q8_act);
    embed_blocks = c.tie_embeddings ? stored_head
                                    : gguf_blocks_linear(src, {"embed_tokens"}, {n.embed},
                                                         {{c.vocab_size, hid}}, {0}, o.gguf_q8_act);
  }
  auto embed = embed_blocks ? at::Tensor() : cv(src.get(n.embed, {c.vocab_size, hid}));
  std::vector<model::DecoderLayer> layers;
  // Modules a Hugging Face directory stores quantized (bitsandbytes 4-bit or int8, GPTQ, AWQ)
  // are taken as they are: never re-quantized.
  const io::SafetensorsSet* st = src.safetensors();
  // A head stored as int8 + SCB (bitsandbytes' int8 layout, what sllm quantize --lm-head int8
  // writes) runs as it is stored; other quantized heads have no reader here.
  std::optional<model::Linear> int8_head;
  if (st != nullptr) {
    for (const char* t : {"lm_head.qweight", "lm_head.weight.absmax"})
      SLLM_CHECK(st->find(t) == nullptr,
                 "{}: lm_head is stored quantized ('{}'); sllm reads a quantized lm_head only as "
                 "int8 + SCB (bitsandbytes' int8 layout, as sllm quantize --lm-head int8 writes "
                 "it): dequantize the head or quantize the dense model again",
                 src.where, t);
    if (intq::is_int8(*st, "lm_head")) {
      // bitsandbytes int8 checkpoints apply their one llm_int8_threshold to every int8 Linear;
      // in the other layouts the head has no outlier decomposition.
      const double threshold = scheme.method == "int8" ? scheme.intq.threshold : 0.0;
      int8_head = model::make_int8_linear({{"lm_head", c.vocab_size}},
                                          {intq::read_int8(*st, "lm_head", {c.vocab_size, hid})},
                                          {}, threshold)
                      .to(o.device);
    }
  }
  bool warned = false;
  std::optional<ProgressBar> bar;  // quantizing takes seconds; plain loading is quiet
  if (!o.quantize.empty() && !(st && quant_layout::is_quantized(*st, hf_names().layer(0, "q"))))
    bar.emplace("quantizing to " + o.quantize, c.num_layers);
  auto stored = [&](const std::vector<std::string>& parts, const std::vector<std::string>& modules,
                    const std::vector<std::vector<int64_t>>& shapes,
                    at::Tensor bias) -> std::optional<model::Linear> {
    if (st == nullptr) return std::nullopt;
    auto l = quant_layout::read_linear(*st, scheme, src.where, parts, modules, shapes,
                                       std::move(bias), o.dtype, o.device);
    if (l && !o.quantize.empty() && !warned) {
      log::warn(
          "{}: the checkpoint is already quantized ({}); its stored weights are kept as they "
          "are, not quantized again to {}",
          src.where, l->format_name(), o.quantize);
      warned = true;
    }
    return l;
  };
  for (int64_t i = 0; i < c.num_layers; ++i) {
    auto mod = [&](const std::string& key) {  // module path: the weight's name minus ".weight"
      auto s = n.layer(i, key);
      if (s.size() > w.size() && s.compare(s.size() - w.size(), w.size(), w) == 0)
        s.resize(s.size() - w.size());
      return s;
    };
    at::Tensor qkv_bias;
    if (c.attention_bias) {
      qkv_bias = at::cat({src.get(n.layer(i, "q") + ".bias", {qd}),
                          src.get(n.layer(i, "k") + ".bias", {kd}),
                          src.get(n.layer(i, "v") + ".bias", {kd})});
    }
    const std::vector<std::string> qkv_parts = {"self_attn.q_proj", "self_attn.k_proj",
                                                "self_attn.v_proj"};
    auto qkv_stored = stored(qkv_parts, {mod("q"), mod("k"), mod("v")},
                             {{qd, hid}, {kd, hid}, {kd, hid}}, qkv_bias);
    // GGUF blocks kept as stored (biases, where a model has them, stay dense).
    auto blocks = [&](const std::vector<std::string>& parts, const std::vector<std::string>& keys,
                      const std::vector<std::vector<int64_t>>& shapes,
                      std::vector<int64_t> heads = {}) -> std::optional<model::Linear> {
      if (!gguf_blocks) return std::nullopt;
      std::vector<std::string> tensors;
      for (const auto& k : keys) tensors.push_back(mod(k) + w);
      heads.resize(keys.size(), 0);
      return gguf_blocks_linear(src, parts, tensors, shapes, heads, o.gguf_q8_act);
    };
    if (!qkv_stored)
      qkv_stored =
          blocks(qkv_parts, {"q", "k", "v"}, {{qd, hid}, {kd, hid}, {kd, hid}},
                 {gguf_qk_permuted ? c.num_heads : 0, gguf_qk_permuted ? c.num_kv_heads : 0});
    model::Linear qkv;
    if (qkv_stored) {
      qkv = std::move(*qkv_stored);
      if (qkv.is<model::GgufFormat>() && qkv_bias.defined()) qkv.bias = cv(qkv_bias);
    } else {
      auto q = src.get(n.layer(i, "q") + w, {qd, hid});
      auto k = src.get(n.layer(i, "k") + w, {kd, hid});
      auto v = src.get(n.layer(i, "v") + w, {kd, hid});
      if (gguf_qk_permuted) {
        q = unpermute_qk(q, c.num_heads);
        k = unpermute_qk(k, c.num_kv_heads);
      }
      qkv = make_linear(qkv_parts, {q, k, v}, qkv_bias, o);
    }
    auto attn_o = stored({"self_attn.o_proj"}, {mod("o")}, {{hid, qd}}, {});
    if (!attn_o) attn_o = blocks({"self_attn.o_proj"}, {"o"}, {{hid, qd}});
    if (!attn_o)
      attn_o = make_linear({"self_attn.o_proj"}, {src.get(n.layer(i, "o"), {hid, qd})}, {}, o);
    auto gate_up = stored({"mlp.gate_proj", "mlp.up_proj"}, {mod("gate"), mod("up")},
                          {{I, hid}, {I, hid}}, {});
    if (!gate_up)
      gate_up = blocks({"mlp.gate_proj", "mlp.up_proj"}, {"gate", "up"}, {{I, hid}, {I, hid}});
    if (!gate_up)
      gate_up = make_linear(
          {"mlp.gate_proj", "mlp.up_proj"},
          {src.get(n.layer(i, "gate"), {I, hid}), src.get(n.layer(i, "up"), {I, hid})}, {}, o);
    auto down = stored({"mlp.down_proj"}, {mod("down")}, {{hid, I}}, {});
    if (!down) down = blocks({"mlp.down_proj"}, {"down"}, {{hid, I}});
    if (!down)
      down = make_linear({"mlp.down_proj"}, {src.get(n.layer(i, "down"), {hid, I})}, {}, o);
    layers.push_back({cv(src.get(n.layer(i, "attn_norm"), {hid})),
                      cv(src.get(n.layer(i, "ffn_norm"), {hid})), std::move(qkv),
                      std::move(*attn_o), std::move(*gate_up), std::move(*down)});
    if (bar) bar->update(i + 1);
  }
  if (bar) bar->finish();
  auto final_norm = cv(src.get(n.final_norm, {hid}));
  // The output projection stays dense (as bitsandbytes leaves lm_head unquantized), except GGUF
  // blocks kept as stored (above).
  model::Linear head{embed, {}};
  head.parts = {{"lm_head", c.vocab_size}};
  auto config = c;
  if (int8_head) {
    head = std::move(*int8_head);
    config.tie_embeddings = false;  // the head is its own tensor, whatever config.json says
  } else if (stored_head) {
    head = std::move(*stored_head);
  } else if (!c.tie_embeddings) {
    head.dense_weight() = cv(src.get(n.lm_head, {c.vocab_size, hid}));
  }
  model::LlamaModel m(config, embed, std::move(layers), final_norm, head);
  if (embed_blocks)
    return std::make_shared<const model::LlamaModel>(m.with_embedding_blocks(*embed_blocks));
  return std::make_shared<const model::LlamaModel>(std::move(m));
}

model::ModelConfig config_from_gguf(const io::GgufFile& f, int64_t vocab_from_tokens) {
  const std::string arch = f.get_string("general.architecture");
  SLLM_CHECK(arch == "llama" || arch == "qwen2" || arch == "mistral",
             "{}: GGUF architecture '{}' is not supported; sllm runs llama, mistral and qwen2",
             f.path(), arch);
  auto key = [&](const std::string& k) { return arch + "." + k; };
  model::ModelConfig c;
  c.architecture = arch;
  c.hidden_size = f.get_int(key("embedding_length"));
  c.intermediate_size = f.get_int(key("feed_forward_length"));
  c.num_layers = f.get_int(key("block_count"));
  c.num_heads = f.get_int(key("attention.head_count"));
  c.num_kv_heads = f.get_int_or(key("attention.head_count_kv"), c.num_heads);
  c.head_dim = f.get_int_or(key("attention.key_length"),
                            f.get_int_or(key("rope.dimension_count"), c.hidden_size / c.num_heads));
  c.max_position = f.get_int_or(key("context_length"), 2048);
  c.rms_norm_eps = f.get_float_or(key("attention.layer_norm_rms_epsilon"), 1e-5);
  c.rope_theta = f.get_float_or(key("rope.freq_base"), 10000.0);
  c.vocab_size = f.get_int_or(key("vocab_size"), vocab_from_tokens);
  const std::string scaling = f.get_string_or(key("rope.scaling.type"), "none");
  if (scaling == "linear") {
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = f.get_float_or(key("rope.scaling.factor"), 1.0);
  }
  c.tie_embeddings = f.find("output.weight") == nullptr;
  c.attention_bias = f.find("blk.0.attn_q.bias") != nullptr;
  c.bos_token_id = f.get_int_or("tokenizer.ggml.bos_token_id", -1);
  c.eos_token_id = f.get_int_or("tokenizer.ggml.eos_token_id", -1);
  c.validate(f.path());
  return c;
}

std::shared_ptr<const tok::Tokenizer> tokenizer_from_gguf(const io::GgufFile& f) {
  const std::string kind = f.get_string_or("tokenizer.ggml.model", "");
  SLLM_CHECK(
      kind == "gpt2",
      "{}: tokenizer.ggml.model '{}' is not supported in GGUF files "
      "(byte-level BPE 'gpt2' is); use a Hugging Face directory with tokenizer.model instead",
      f.path(), kind);
  const auto& md = f.metadata();
  tok::GgufVocab v;
  SLLM_CHECK(md.contains("tokenizer.ggml.tokens") && md["tokenizer.ggml.tokens"].is_array(),
             "{}: no tokenizer in the file (tokenizer.ggml.tokens is missing)", f.path());
  v.tokens = md["tokenizer.ggml.tokens"].get<std::vector<std::string>>();
  if (md.contains("tokenizer.ggml.token_type"))
    v.token_types = md["tokenizer.ggml.token_type"].get<std::vector<int32_t>>();
  if (md.contains("tokenizer.ggml.merges"))
    v.merges = md["tokenizer.ggml.merges"].get<std::vector<std::string>>();
  v.pre = f.get_string_or("tokenizer.ggml.pre", "default");
  v.bos_id = static_cast<int32_t>(f.get_int_or("tokenizer.ggml.bos_token_id", -1));
  v.eos_id = static_cast<int32_t>(f.get_int_or("tokenizer.ggml.eos_token_id", -1));
  v.pad_id = static_cast<int32_t>(f.get_int_or("tokenizer.ggml.padding_token_id", -1));
  v.unk_id = static_cast<int32_t>(f.get_int_or("tokenizer.ggml.unknown_token_id", -1));
  v.add_bos = md.value("tokenizer.ggml.add_bos_token", false);
  v.chat_template = f.get_string_or("tokenizer.chat_template", "");
  return tok::make_bpe_from_gguf(v);
}

LoadedModel load_gguf(const std::string& path, const LoadOptions& o) {
  GgufSource src(io::GgufFile::open(path));
  const auto& f = src.file;
  LoadedModel m;
  m.path = path;
  m.format = "gguf";
  m.tokenizer = tokenizer_from_gguf(f);
  auto c = config_from_gguf(f, m.tokenizer->vocab_size());
  for (const auto& t : f.tensors()) {
    m.file_tensor_types[io::ggml_type_name(t.ggml_type)]++;
    m.file_bytes += t.nbytes;
  }
  m.display_name = f.get_string_or("general.name", fs::path(path).stem().string());
  {
    const auto g = gguf_names(), h = hf_names();
    auto weight = [](std::string n) {
      return n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0 ? n : n + ".weight";
    };
    std::map<std::string, std::string> hf = {
        {g.embed, h.embed}, {g.final_norm, h.final_norm}, {g.lm_head, h.lm_head}};
    for (int64_t i = 0; i < c.num_layers; ++i)
      for (const char* k : {"attn_norm", "ffn_norm", "q", "k", "v", "o", "gate", "up", "down"})
        hf[weight(g.layer(i, k))] = weight(h.layer(i, k));
    for (const auto& t : f.tensors())
      if (auto it = hf.find(t.name); it != hf.end())
        m.stored_types[it->second] = io::ggml_type_name(t.ggml_type);
  }
  // Blocks as stored run on the CPU kernels; quantizing to NF4, CUDA and --dequantize take the
  // dense path.
  const bool blocks = !o.dequantize && o.quantize.empty() && o.device.is_cpu();
  m.model = build_model(c, src, gguf_names(), c.architecture == "llama", o, {}, blocks);
  return m;
}

LoadedModel load_hf(const std::string& dir, const LoadOptions& o) {
  const auto cfg_path = (fs::path(dir) / "config.json").string();
  SLLM_CHECK(fs::exists(cfg_path), "'{}' has no config.json: not a Hugging Face model directory",
             dir);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(io::read_file(cfg_path));
  } catch (const nlohmann::json::exception& e) {
    SLLM_FAIL("{}: invalid JSON ({})", cfg_path, e.what());
  }
  // Quantized checkpoints (bitsandbytes 4-bit / int8, GPTQ, AWQ) load as quantized Linears;
  // modules are recognized by their tensors and read as the quantization config describes.
  const auto scheme = quant_layout::read_scheme(dir, j, cfg_path);
  auto c = model::config_from_hf(j, cfg_path);
  LoadedModel m;
  m.path = dir;
  m.format = "hf";
  m.tokenizer = tok::load_tokenizer_dir(dir);
  HfSource src(io::SafetensorsSet::open_dir(dir), dir);
  for (const auto* t : src.set.all()) {
    m.file_tensor_types[io::dtype_name(t->dtype)]++;
    m.file_bytes += t->nbytes;
  }
  if (c.tie_embeddings == false && src.find("lm_head.weight") == nullptr) c.tie_embeddings = true;
  m.display_name = fs::path(dir).filename().string();
  m.model = build_model(c, src, hf_names(), false, o, scheme);
  return m;
}

// A dense Linear with l's values (dequantized), parts and bias.
model::Linear dense_copy(const model::Linear& l) {
  std::vector<at::Tensor> w;
  for (int j = 0; j < static_cast<int>(std::max<size_t>(l.parts.size(), 1)); ++j)
    w.push_back(l.dense_part(j));
  model::Linear d{w.size() == 1 ? w[0] : at::cat(w, 0), l.bias};
  d.parts = l.parts;
  return d;
}

}  // namespace

at::ScalarType parse_dtype(const std::string& n) {
  if (n == "fp32" || n == "float32" || n == "f32") return at::kFloat;
  if (n == "bf16" || n == "bfloat16") return at::kBFloat16;
  if (n == "fp16" || n == "float16" || n == "f16") return at::kHalf;
  SLLM_FAIL("unknown dtype '{}': use fp32, bf16 or fp16", n);
}

at::Device parse_device(const std::string& n) {
  try {
    at::Device d(n);
    SLLM_CHECK(d.is_cpu() || d.is_cuda(), "unsupported device '{}': use cpu or cuda", n);
    return d;
  } catch (const c10::Error&) {
    SLLM_FAIL("unknown device '{}': use cpu, cuda or cuda:N", n);
  }
}

LoadedModel load_model(const std::string& path, const LoadOptions& o) {
  SLLM_CHECK(!path.empty(), "no model given: pass --model <file.gguf | hf-directory>");
  SLLM_CHECK(fs::exists(path), "model '{}' does not exist", path);
  if (o.device.is_cuda())
    SLLM_CHECK(ops::cuda_available(), "device '{}' requested but no CUDA GPU is available",
               o.device.str());
  if (fs::is_directory(path)) return load_hf(path, o);
  return load_gguf(path, o);
}

std::shared_ptr<const tok::Tokenizer> load_tokenizer(const std::string& path) {
  SLLM_CHECK(!path.empty(), "no model given: pass --model <file.gguf | hf-directory>");
  SLLM_CHECK(fs::exists(path), "model '{}' does not exist", path);
  if (fs::is_directory(path)) return tok::load_tokenizer_dir(path);
  return tokenizer_from_gguf(io::GgufFile::open(path, /*with_data=*/false));
}

void save_hf_dir(const LoadedModel& m, const std::string& out_dir, at::ScalarType dtype,
                 const SaveOptions& so) {
  io::AtomicDir out(out_dir, /*replace=*/false);
  const auto& c = m.model->config();
  auto saved = m.model;
  // GGUF blocks have no Hugging Face layout: those Linears are always written dense.
  bool gguf = false;
  for (const auto& L : m.model->layers())
    for (const auto& [name, l] : L.linears()) gguf = gguf || l.is<model::GgufFormat>();
  if (so.dequantize || gguf)
    saved = std::make_shared<const model::LlamaModel>(
        m.model->map_linears([&](int64_t, const model::Linear& l) {
          if (l.is<model::DenseFormat>() || (!so.dequantize && !l.is<model::GgufFormat>()))
            return l;
          return dense_copy(l);
        }));
  // An untied quantized head (--lm-head int8) is written dense too when dequantizing.
  if (so.dequantize && !c.tie_embeddings && !saved->lm_head().is<model::DenseFormat>())
    saved = std::make_shared<const model::LlamaModel>(
        saved->with_lm_head(dense_copy(saved->lm_head())));
  const std::string dtype_name = dtype == at::kFloat      ? "float32"
                                 : dtype == at::kBFloat16 ? "bfloat16"
                                                          : "float16";
  auto cfg = model::config_to_hf(c, dtype_name);
  // Quantized Linears are written in their checkpoint layout (bitsandbytes 4-bit / int8, GPTQ
  // v1, AWQ GEMM), with the quantization_config the exporting tool writes.
  auto qc = quant_layout::quantization_config(*saved, dtype);
  if (!qc.is_null()) {
    if (so.quantization_config_extra.is_object()) qc.update(so.quantization_config_extra);
    cfg["quantization_config"] = std::move(qc);
  }
  io::write_file_atomic(out.file("config.json"), cfg.dump(2) + "\n");
  nlohmann::json gen = {{"do_sample", false}};
  if (m.tokenizer->bos_id >= 0) gen["bos_token_id"] = m.tokenizer->bos_id;
  if (m.tokenizer->eos_id >= 0) gen["eos_token_id"] = m.tokenizer->eos_id;
  io::write_file_atomic(out.file("generation_config.json"), gen.dump(2) + "\n");
  write_tensors(out.file("model.safetensors"), quant_layout::hf_tensors(*saved, dtype));
  tok::save_hf_tokenizer(*m.tokenizer, out.path());
  out.commit();
}

}  // namespace sllm::load
