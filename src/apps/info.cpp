// sllm info: what a model file holds and what running it will cost.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <iostream>
#include <map>

#include "apps/apps.h"
#include "apps/common.h"
#include "core/config.h"
#include "core/memory.h"
#include "kv/kv_cache.h"
#include "quantize/lm_head.h"
#include "tokenizer/chat_template.h"

namespace sllm::apps {

options::Table info_options() {
  return options::join(
      {model_group().table(),
       {{"ctx", 0, "context for the KV estimate (0: the model's)", "--ctx"},
        {"batch", 1, "sequences for the KV estimate", "--batch"},
        {"tensors", false, "list every tensor with its shape and format", "--tensors"},
        {"json", false, "JSON output", "--json"}}});
}

namespace {

struct ModuleInfo {
  std::string name, format;
  std::vector<int64_t> shape;
  int64_t bytes = 0;
  std::string stored;  // the file's type (GGUF), else empty
};

// Every weight as loaded, in Hugging Face naming, with its storage format.
std::vector<ModuleInfo> module_formats(const model::LlamaModel& m) {
  std::vector<ModuleInfo> out;
  auto dense = [](const std::string& name, const at::Tensor& t) {
    return ModuleInfo{name, fmt::format("dense {}", t.dtype().name()), t.sizes().vec(),
                      static_cast<int64_t>(t.nbytes())};
  };
  if (const auto* blocks = m.embed_blocks()) {
    const bool shared = m.config().tie_embeddings;  // the head's own blocks: counted once, there
    out.push_back(
        {"model.embed_tokens.weight",
         fmt::format("gguf {} rows{}", blocks->get<model::GgufFormat>().only().type_name(),
                     shared ? ", the head's blocks" : ""),
         {blocks->out_features(), blocks->in_features()},
         shared ? 0 : blocks->weight_bytes()});
  } else {
    out.push_back(dense("model.embed_tokens.weight", m.embed()));
  }
  for (size_t i = 0; i < m.layers().size(); ++i) {
    const auto& L = m.layers()[i];
    const std::string p = fmt::format("model.layers.{}.", i);
    out.push_back(dense(p + "input_layernorm.weight", L.attn_norm));
    for (const auto& [name, l] : L.linears())
      for (size_t j = 0; j < l.parts.size(); ++j) {
        const auto& part = l.parts[j];
        int64_t bytes = l.weight_bytes() * part.rows / std::max<int64_t>(l.out_features(), 1);
        int64_t inside = 0;  // GGUF pieces of different types: the part's own blocks
        const auto* g = l.get_if<model::GgufFormat>();
        const auto* piece =
            g ? g->piece_of(l.parts.size() > 1 ? l.part_offset(static_cast<int>(j)) : 0, part.rows,
                            &inside)
              : nullptr;
        if (piece != nullptr) bytes = piece->row_bytes() * part.rows;
        out.push_back({p + part.name, l.format_name(), {part.rows, l.in_features()}, bytes});
      }
    out.push_back(dense(p + "post_attention_layernorm.weight", L.ffn_norm));
  }
  const auto& head = m.lm_head();
  if (!m.config().tie_embeddings || !head.is<model::DenseFormat>())
    out.push_back({m.config().tie_embeddings ? "lm_head (tied to model.embed_tokens.weight)"
                                             : "lm_head.weight",
                   head.format_name(),
                   {head.out_features(), head.in_features()},
                   head.weight_bytes()});
  return out;
}

// The stored type of a tensor or module as the file holds it (GGUF), or "".
std::string stored_type(const load::LoadedModel& m, const std::string& name) {
  for (const auto& n :
       {name, name + ".weight",
        name.rfind("lm_head (tied", 0) == 0 ? std::string("model.embed_tokens.weight") : name}) {
    auto it = m.stored_types.find(n);
    if (it != m.stored_types.end()) return it->second;
  }
  return "";
}

}  // namespace

int run_info(const nlohmann::json& cfg) {
  auto m = load_from_config(cfg);
  const auto& c = m.model->config();
  const auto& t = *m.tokenizer;
  int64_t ctx = config::get<int64_t>(cfg, "ctx");
  if (ctx <= 0) ctx = c.max_position;
  const int64_t batch = config::get<int64_t>(cfg, "batch");
  SLLM_CHECK(batch > 0, "batch must be positive, got {}", batch);
  const int64_t elem = at::elementSize(m.model->dtype());
  const uint64_t kv_formula =
      kv::kv_bytes(c.num_layers, c.num_kv_heads, c.head_dim, ctx * batch, elem);
  // What the KV manager really allocates for that many tokens (rounded up to whole blocks).
  kv::KvCacheSpec spec{c.num_layers, c.num_kv_heads, c.head_dim,
                       kv::BlockManager::blocks_needed(ctx * batch, 16), 16};
  const uint64_t kv_alloc =
      kv::KvCache(spec, m.model->dtype(), m.model->device()).allocated_bytes();
  const auto tpl = tok::detect_chat_template(t);

  nlohmann::json j;
  j["model"] = m.path;
  j["name"] = m.display_name;
  j["format"] = m.format;
  j["architecture"] = c.architecture;
  j["parameters"] = c.num_parameters();
  j["layers"] = c.num_layers;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["heads"] = c.num_heads;
  j["kv_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["max_position"] = c.max_position;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = c.rope_scaling.type;
  j["tie_embeddings"] = c.tie_embeddings;
  j["lm_head"] = quantize::describe_lm_head(*m.model);
  j["file_tensor_types"] = m.file_tensor_types;
  j["file_tensor_bytes"] = m.file_bytes;
  j["loaded_dtype"] = std::string(c10::toString(m.model->dtype()));
  j["loaded_weight_bytes"] = m.model->weight_bytes();
  j["vocab_size"] = t.vocab_size();
  auto tokname = [&](int32_t id) {
    return id >= 0 ? nlohmann::json{{"id", id}, {"piece", t.piece(id)}} : nlohmann::json();
  };
  j["special_tokens"] = {
      {"bos", tokname(t.bos_id)}, {"eos", tokname(t.eos_id)}, {"pad", tokname(t.pad_id)}};
  j["add_bos"] = t.add_bos;
  j["stop_ids"] = t.stop_ids;
  j["chat_format"] = tok::to_string(tpl.format);
  j["chat_template"] = t.chat_template;
  j["kv_cache"] = {{"ctx", ctx},
                   {"batch", batch},
                   {"bytes_formula", kv_formula},
                   {"bytes_allocated", kv_alloc},
                   {"block_size", 16},
                   {"blocks", spec.num_blocks}};
  auto modules = module_formats(*m.model);
  for (auto& mi : modules) mi.stored = stored_type(m, mi.name);
  std::map<std::string, int64_t> format_counts;
  for (const auto& mi : modules) {
    format_counts[mi.format]++;
    j["tensors"].push_back(
        {{"name", mi.name}, {"format", mi.format}, {"shape", mi.shape}, {"bytes", mi.bytes}});
    if (!mi.stored.empty()) j["tensors"].back()["stored"] = mi.stored;
  }
  j["weight_formats"] = format_counts;
  if (config::get<bool>(cfg, "json")) {
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  std::string types;
  for (const auto& [k, v] : m.file_tensor_types)
    types += fmt::format("{}{} x{}", types.empty() ? "" : ", ", k, v);
  fmt::print("model          {}\n", m.path);
  fmt::print("name           {} ({})\n", m.display_name, m.format);
  fmt::print("architecture   {}: {} layers, hidden {}, ffn {}, heads {} (kv {}), head_dim {}\n",
             c.architecture, c.num_layers, c.hidden_size, c.intermediate_size, c.num_heads,
             c.num_kv_heads, c.head_dim);
  fmt::print("parameters     {} ({:.1f} M)\n", c.num_parameters(), c.num_parameters() / 1e6);
  fmt::print("rope           theta {}, scaling {}; max positions {}\n", c.rope_theta,
             c.rope_scaling.type, c.max_position);
  fmt::print("file tensors   {} ({})\n", types, memory::format_bytes(m.file_bytes));
  fmt::print("loaded weights {} as {}\n", memory::format_bytes(m.model->weight_bytes()),
             c10::toString(m.model->dtype()));
  std::string formats;
  for (const auto& [k, v] : format_counts)
    formats += fmt::format("{}{} x{}", formats.empty() ? "" : ", ", k, v);
  fmt::print("weight formats {}{}\n", formats,
             config::get<bool>(cfg, "tensors") ? "" : " (--tensors lists each tensor)");
  fmt::print("lm_head        {}\n", quantize::describe_lm_head(*m.model));
  if (config::get<bool>(cfg, "tensors"))
    for (const auto& mi : modules)
      fmt::print("  {:<48} {:<14} {:>10}  {}{}\n", mi.name,
                 fmt::format("[{}]", fmt::join(mi.shape, ", ")), memory::format_bytes(mi.bytes),
                 mi.format, mi.stored.empty() ? "" : " (stored " + mi.stored + ")");
  fmt::print("vocab          {} tokens; bos {} eos {} pad {}; add_bos {}\n", t.vocab_size(),
             t.bos_id >= 0 ? t.piece(t.bos_id) : "-", t.eos_id >= 0 ? t.piece(t.eos_id) : "-",
             t.pad_id >= 0 ? t.piece(t.pad_id) : "-", t.add_bos);
  fmt::print("chat template  {}{}\n", tok::to_string(tpl.format),
             tpl.default_system.empty()
                 ? ""
                 : fmt::format(" (default system: \"{}\")", tpl.default_system));
  fmt::print(
      "kv cache       ctx {} x batch {}: {} by formula (2 x {} layers x {} kv heads x {} x "
      "{} tokens x {} B), {} allocated in {} blocks of 16\n",
      ctx, batch, memory::format_bytes(kv_formula), c.num_layers, c.num_kv_heads, c.head_dim,
      ctx * batch, elem, memory::format_bytes(kv_alloc), spec.num_blocks);
  return 0;
}

}  // namespace sllm::apps
