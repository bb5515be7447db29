// Dispatch between the checkpoint layouts of quantized Linears. See quant_layout.h.
#include "load/quant_layout.h"

#include <ATen/ATen.h>

#include <fmt/ranges.h>

#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"
#include "io/atomic_write.h"
#include "load/bnb_layout.h"
#include "load/tensor_io.h"
#include "model/llama.h"
#include "quant/intq.h"

namespace fs = std::filesystem;

namespace sllm::load::quant_layout {
namespace {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

enum class Stored { dense, nf4, intq, int8 };

const char* stored_name(Stored s) {
  switch (s) {
    case Stored::nf4:
      return "in 4 bits (bitsandbytes)";
    case Stored::intq:
      return "as GPTQ/AWQ (qweight)";
    case Stored::int8:
      return "as bitsandbytes int8 (SCB)";
    case Stored::dense:
      break;
  }
  return "dense";
}

Stored stored_as(const io::SafetensorsSet& set, const std::string& module) {
  if (bnb::is_4bit(set, module)) return Stored::nf4;
  if (intq::has_qweight(set, module)) return Stored::intq;
  if (intq::is_int8(set, module)) return Stored::int8;
  return Stored::dense;
}

nlohmann::json read_json_file(const std::string& path) {
  try {
    return nlohmann::json::parse(io::read_file(path));
  } catch (const nlohmann::json::exception& e) {
    SLLM_FAIL("{}: invalid JSON ({})", path, e.what());
  }
}

std::string config_says(const Scheme& s) {
  if (s.method.empty()) return "the directory has no quantization_config";
  const std::string name = s.method == "bnb4"   ? "'bitsandbytes' (4-bit)"
                           : s.method == "int8" ? "'bitsandbytes' (8-bit)"
                                                : "'" + s.method + "'";
  return fmt::format("{} says quant_method {}", s.source, name);
}

// A quantized module whose model has no bias slot: old GPTQ exporters wrote all-zero biases for
// every module; anything else would be silently dropped, so it is an error.
void check_no_bias(const io::SafetensorsSet& set, const std::string& where,
                   const std::string& module) {
  const auto* v = set.find(module + ".bias");
  if (v == nullptr) return;
  SLLM_CHECK(
      v->dtype == io::DType::f16 || v->dtype == io::DType::f32 || v->dtype == io::DType::bf16,
      "{}: tensor '{}.bias' has dtype {}, expected a float type", where, module,
      io::dtype_name(v->dtype));
  const bool zero = tensor_from_view(*v).eq(0).all().item<bool>();
  SLLM_CHECK(zero,
             "{}: module '{}' has a non-zero bias, but the model config has none for it (sllm "
             "would drop it)",
             where, module);
}

// The checkpoint layout a Linear is saved in ("" for dense).
std::string layout_of(const model::Linear& l) {
  return std::visit(
      model::Overloaded{
          [](const model::DenseFormat&) { return std::string(); },
          [](const model::Nf4Format&) { return std::string("bitsandbytes 4-bit"); },
          [](const model::Int8Format&) { return std::string("bitsandbytes int8"); },
          [](const model::GgufFormat&) -> std::string {
            SLLM_FAIL(
                "GGUF blocks have no Hugging Face checkpoint layout (save_hf_dir writes "
                "them dense)");
          },
          [](const model::IntQFormat& f) {
            if (f.method == "gptq" || f.method == "rtn") return std::string("GPTQ");
            if (f.method == "awq") return std::string("AWQ");
            SLLM_FAIL(
                "an integer-quantized Linear made by '{}' has no checkpoint layout (gptq, rtn or "
                "awq)",
                f.method);
          }},
      l.weight);
}

// The tensors of every module of quantized Linear l of decoder layer i, keyed by the dense name
// each stands for ("model.layers.N.<part>.weight"). GPTQ / AWQ modules carry their own fp16 bias.
std::vector<std::pair<std::string, NamedTensors>> module_tensors(int64_t i, const model::Linear& l,
                                                                 at::ScalarType dtype) {
  const std::string prefix = "model.layers." + std::to_string(i) + ".";
  std::vector<std::pair<std::string, NamedTensors>> out;
  auto per_part = [&](auto&& tensors_of) {
    for (int j = 0; j < static_cast<int>(l.parts.size()); ++j) {
      const std::string module = prefix + l.parts[j].name;
      out.emplace_back(module + ".weight", tensors_of(module, j));
    }
  };
  std::visit(
      model::Overloaded{[](const model::DenseFormat&) {}, [](const model::GgufFormat&) {},
                        [&](const model::Nf4Format&) { out = bnb::linear_tensors(i, l, dtype); },
                        [&](const model::Int8Format&) {
                          per_part([&](const std::string& module, int j) {
                            return intq::int8_module_tensors(module, l.int8_part(j));
                          });
                        },
                        [&](const model::IntQFormat&) {
                          const bool gptq = layout_of(l) == "GPTQ";
                          per_part([&](const std::string& module, int j) {
                            at::Tensor b;
                            if (l.bias.defined())
                              b = l.bias.narrow(0, l.part_offset(j), l.parts[j].rows);
                            const auto q = l.intq_part(j);
                            return gptq ? intq::gptq_module_tensors(module, q, b)
                                        : intq::awq_module_tensors(module, q, b);
                          });
                        }},
      l.weight);
  return out;
}

}  // namespace

// ---- loading ----

Scheme read_scheme(const std::string& dir, const nlohmann::json& config,
                   const std::string& config_path) {
  Scheme s;
  nlohmann::json qc;
  if (config.contains("quantization_config") && !config["quantization_config"].is_null()) {
    qc = config["quantization_config"];
    s.source = config_path;
  } else {
    // Separate files of AutoGPTQ (quantize_config.json) and older AutoAWQ (quant_config.json,
    // with w_bit / q_group_size / version keys).
    for (const auto& [file, method] :
         {std::pair<const char*, const char*>{"quantize_config.json", "gptq"},
          {"quant_config.json", "awq"}}) {
      const auto p = (fs::path(dir) / file).string();
      if (!fs::exists(p)) continue;
      qc = read_json_file(p);
      SLLM_CHECK(qc.is_object(), "{}: expected a JSON object", p);
      if (!qc.contains("quant_method")) qc["quant_method"] = method;
      s.source = p;
      break;
    }
    if (qc.is_null()) return s;
  }
  SLLM_CHECK(qc.is_object(), "{}: quantization_config must be an object", s.source);
  auto is_true = [&](const char* k) {
    return qc.contains(k) && qc[k].is_boolean() && qc[k].get<bool>();
  };
  const bool bnb4 = qc.contains("quant_method") && qc["quant_method"] == "bitsandbytes" &&
                    !is_true("load_in_8bit") && !is_true("_load_in_8bit");
  if (bnb4) {
    bnb::check_quantization_config(qc, s.source);
    s.method = "bnb4";
    return s;
  }
  s.intq = intq::parse_config(qc, s.source);
  s.method = s.intq.method;
  return s;
}

bool is_quantized(const io::SafetensorsSet& set, const std::string& module) {
  return stored_as(set, module) != Stored::dense;
}

std::optional<model::Linear> read_linear(const io::SafetensorsSet& set, const Scheme& scheme,
                                         const std::string& where,
                                         const std::vector<std::string>& parts,
                                         const std::vector<std::string>& modules,
                                         const std::vector<std::vector<int64_t>>& shapes,
                                         at::Tensor bias, at::ScalarType dtype, at::Device device) {
  std::vector<Stored> kinds;
  for (const auto& m : modules) kinds.push_back(stored_as(set, m));
  for (size_t k = 1; k < kinds.size(); ++k) {
    const Stored a = kinds[0] == Stored::dense ? kinds[k] : kinds[0];
    const Stored b = kinds[0] == Stored::dense ? kinds[0] : kinds[k];
    SLLM_CHECK(kinds[k] == kinds[0],
               "{}: modules {} are stored partly {} and partly {}; sllm fuses them into one "
               "Linear and needs them stored alike",
               where, fmt::join(modules, ", "), stored_name(a), stored_name(b));
  }
  const Stored kind = kinds[0];
  if (kind == Stored::dense) return std::nullopt;
  std::vector<model::LinearPart> lp;
  for (size_t k = 0; k < modules.size(); ++k) lp.push_back({parts[k], shapes[k][0]});
  if (bias.defined()) bias = bias.to(device, dtype).contiguous();

  if (kind == Stored::nf4) {
    SLLM_CHECK(scheme.method.empty() || scheme.method == "bnb4",
               "{}: module '{}' is stored in bitsandbytes' 4-bit layout, but {}", where, modules[0],
               config_says(scheme));
    std::vector<quant::Nf4Weight> q;
    for (size_t k = 0; k < modules.size(); ++k)
      q.push_back(bnb::read_module(set, modules[k], shapes[k]));
    return model::make_nf4_linear(std::move(lp), std::move(q), bias).to(device);
  }
  if (kind == Stored::int8) {
    SLLM_CHECK(scheme.method.empty() || scheme.method == "int8",
               "{}: module '{}' is stored in bitsandbytes' 8-bit layout (int8 weight + SCB), but "
               "{}",
               where, modules[0], config_says(scheme));
    std::vector<quant::Int8Weight> q;
    for (size_t k = 0; k < modules.size(); ++k)
      q.push_back(intq::read_int8(set, modules[k], shapes[k]));
    return model::make_int8_linear(std::move(lp), q, bias,
                                   scheme.method.empty() ? 6.0 : scheme.intq.threshold)
        .to(device);
  }
  SLLM_CHECK(scheme.method == "gptq" || scheme.method == "awq",
             "{}: module '{}' holds GPTQ/AWQ tensors (qweight), but {}; sllm needs quant_method "
             "gptq or awq with bits and group_size to read them",
             where, modules[0], config_says(scheme));
  std::vector<quant::IntQWeight> q;
  for (size_t k = 0; k < modules.size(); ++k) {
    q.push_back(scheme.method == "gptq" ? intq::read_gptq(set, modules[k], shapes[k], scheme.intq)
                                        : intq::read_awq(set, modules[k], shapes[k], scheme.intq));
    if (!bias.defined()) check_no_bias(set, where, modules[k]);
    SLLM_CHECK(q[k].g_idx == q[0].g_idx,
               "{}: modules '{}' and '{}' have different g_idx (act-order permutations); sllm "
               "fuses them into one Linear and needs one order",
               where, modules[0], modules[k]);
    if (q[k].sym != q[0].sym) q[0].sym = q[k].sym = false;  // AWQ: sym only if all agree
  }
  for (auto& w : q) w.sym = q[0].sym;
  return model::make_intq_linear(std::move(lp), q, bias,
                                 scheme.method == "awq" ? "awq" : scheme.intq.made_by)
      .to(device);
}

// ---- saving ----

NamedTensors hf_tensors(const model::LlamaModel& m, at::ScalarType dtype) {
  // A tied head is not written (the embedding is), whatever its format; an untied int8 head is
  // written in bitsandbytes' int8 layout (lm_head.weight int8, lm_head.SCB, weight_format).
  const auto& head = m.lm_head();
  const bool int8_head = !m.config().tie_embeddings && head.is<model::Int8Format>();
  SLLM_CHECK(m.config().tie_embeddings || int8_head || head.is<model::DenseFormat>(),
             "a {} lm_head cannot be saved (sllm writes lm_head dense or int8)",
             head.format_name());
  // "<module>.weight" -> the module's quantized tensors, spliced into the dense state dict below.
  std::map<std::string, NamedTensors> splice;
  // hf_state_dict() names and orders every tensor; quantized Linears are swapped for dense stubs
  // of zero columns so that it neither dequantizes them nor needs to know their layouts.
  const auto stub = m.map_linears([&](int64_t i, const model::Linear& l) {
    if (l.is<model::DenseFormat>()) return l;
    model::Linear d{at::empty({l.out_features(), 0}, at::TensorOptions().dtype(dtype)), l.bias};
    d.parts = l.parts;
    for (auto& [name, t] : module_tensors(i, l, dtype)) splice[name] = std::move(t);
    if (l.is<model::IntQFormat>()) d.bias = at::Tensor();  // written with the module
    return d;
  });
  NamedTensors out;
  size_t spliced = 0;
  if (int8_head) splice["lm_head.weight"] = intq::int8_module_tensors("lm_head", head.int8_part(0));
  for (auto& [name, t] : stub.hf_state_dict()) {
    auto it = splice.find(name);
    if (it == splice.end()) {
      out.emplace_back(name, t.to(at::kCPU, dtype).contiguous());
      continue;
    }
    for (auto& e : it->second) out.push_back(std::move(e));
    ++spliced;
  }
  SLLM_CHECK(spliced == splice.size(), "{} of {} quantized modules have no place in the state dict",
             splice.size() - spliced, splice.size());
  return out;
}

namespace {

// The quantization_config of m's decoder Linears (the head aside).
nlohmann::json decoder_config(const model::LlamaModel& m, at::ScalarType dtype) {
  std::set<std::string> kinds;
  std::vector<const model::Linear*> q;                       // quantized Linears
  std::vector<std::string> dense;                            // full paths of dense decoder modules
  std::map<int64_t, std::set<std::string>> quantized_names;  // layer -> part names
  for (size_t i = 0; i < m.layers().size(); ++i) {
    const auto& L = m.layers()[i];
    quantized_names[static_cast<int64_t>(i)];
    for (const auto& [name, l] : L.linears()) {
      if (l.is<model::DenseFormat>()) {
        for (const auto& p : l.parts)
          dense.push_back("model.layers." + std::to_string(i) + "." + p.name);
        continue;
      }
      kinds.insert(layout_of(l));
      q.push_back(&l);
      for (const auto& p : l.parts) quantized_names[static_cast<int64_t>(i)].insert(p.name);
    }
  }
  if (kinds.empty()) return nullptr;
  SLLM_CHECK(kinds.size() == 1,
             "the model mixes quantization formats ({}); a checkpoint's quantization_config "
             "describes one, so it cannot be saved",
             fmt::join(kinds, ", "));
  const std::string kind = *kinds.begin();
  if (kind == "bitsandbytes 4-bit") return bnb::quantization_config(m, dtype);
  if (kind == "bitsandbytes int8") {
    std::set<double> th;
    for (const auto* l : q) th.insert(l->get<model::Int8Format>().t.threshold);
    SLLM_CHECK(th.size() == 1,
               "the int8 Linears use different outlier thresholds ({}); llm_int8_threshold holds "
               "one",
               fmt::join(th, ", "));
    return intq::int8_config(*th.begin(), dense);
  }
  // GPTQ / AWQ: one bits, group size and sym for the whole checkpoint.
  std::set<int> bits;
  std::set<bool> sym;
  std::set<int64_t> gs;
  bool per_channel = true, act_order = false, all_rtn = true;
  for (const auto* l : q) {
    const auto& f = l->get<model::IntQFormat>();
    bits.insert(f.t.bits);
    sym.insert(f.sym);
    gs.insert(f.t.group_size);
    per_channel = per_channel && f.t.group_size == f.t.in;
    act_order = act_order || f.t.perm.defined();
    all_rtn = all_rtn && f.method == "rtn";
  }
  SLLM_CHECK(bits.size() == 1 && sym.size() == 1,
             "the {} Linears differ in bits or symmetry; a quantization_config holds one of each",
             kind);
  SLLM_CHECK(per_channel || gs.size() == 1,
             "the {} Linears use different group sizes ({}); a quantization_config holds one", kind,
             fmt::join(gs, ", "));
  const int64_t group_size = per_channel && gs.size() > 1 ? -1 : *gs.begin();
  if (kind == "AWQ") return intq::awq_config(group_size, dense);
  std::vector<std::string> in_block;
  if (!dense.empty()) {
    const auto& first = quantized_names.begin()->second;
    for (const auto& [layer, names] : quantized_names)
      SLLM_CHECK(names == first,
                 "layer {} quantizes other modules than layer 0; the GPTQ config "
                 "(modules_in_block_to_quantize) names one set for every layer",
                 layer);
    in_block.assign(first.begin(), first.end());
  }
  return intq::gptq_config(*bits.begin(), group_size, *sym.begin(), act_order,
                           all_rtn ? "rtn" : "gptq", in_block);
}

}  // namespace

nlohmann::json quantization_config(const model::LlamaModel& m, at::ScalarType dtype) {
  auto qc = decoder_config(m, dtype);
  const auto* head = m.lm_head().get_if<model::Int8Format>();
  if (m.config().tie_embeddings || head == nullptr) return qc;
  SLLM_CHECK(!qc.is_null(),
             "an int8 lm_head is saved with quantized decoder Linears only (their "
             "quantization_config says how the directory is read)");
  const double threshold = head->t.threshold;
  if (qc.value("quant_method", "") == "bitsandbytes" && qc.value("load_in_8bit", false)) {
    // transformers converts every Linear not in llm_int8_skip_modules to Linear8bitLt with the
    // one llm_int8_threshold; null means its default list, which is the output head.
    SLLM_CHECK(qc["llm_int8_threshold"].get<double>() == threshold,
               "the int8 lm_head uses outlier threshold {} and the decoder {}; "
               "llm_int8_threshold holds one",
               threshold, qc["llm_int8_threshold"].get<double>());
    auto skip = nlohmann::json::array();
    if (qc["llm_int8_skip_modules"].is_array())
      for (const auto& name : qc["llm_int8_skip_modules"])
        if (name != "lm_head") skip.push_back(name);
    qc["llm_int8_skip_modules"] = std::move(skip);
    return qc;
  }
  // No GPTQ / AWQ / 4-bit reader knows an int8 head: it is recorded in sllm's own key (loaders
  // find it by its tensors, lm_head.weight int8 + lm_head.SCB).
  SLLM_CHECK(threshold == 0,
             "an int8 lm_head next to {} Linears is stored without an outlier threshold (it has "
             "{}); make it with threshold 0",
             qc.value("quant_method", ""), threshold);
  qc["sllm"] = {{"lm_head", "int8"}};
  return qc;
}

}  // namespace sllm::load::quant_layout
