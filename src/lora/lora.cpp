#include "lora/lora.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <filesystem>
#include <optional>
#include <set>

#include "core/config.h"
#include "core/error.h"
#include "io/atomic_dir.h"
#include "io/atomic_write.h"
#include "io/safetensors.h"
#include "load/tensor_io.h"

namespace fs = std::filesystem;

namespace sllm::lora {
namespace {

std::string short_name(const std::string& part) {
  const auto dot = part.rfind('.');
  return dot == std::string::npos ? part : part.substr(dot + 1);
}

std::string peft_key(int64_t layer, const std::string& part, const char* ab) {
  return fmt::format("base_model.model.model.layers.{}.{}.lora_{}.weight", layer, part, ab);
}

template <typename Fn>
void for_each_linear(const model::LlamaModel& m, Fn fn) {
  for (size_t i = 0; i < m.layers().size(); ++i) {
    const auto& L = m.layers()[i];
    for (const auto& [name, l] : L.linears()) fn(static_cast<int64_t>(i), l);
  }
}

at::Tensor view_of(const io::TensorView& v) {
  SLLM_CHECK(v.dtype == io::DType::f32 || v.dtype == io::DType::f16 || v.dtype == io::DType::bf16,
             "adapter tensor '{}' has dtype {}, expected a float type", v.name,
             io::dtype_name(v.dtype));
  return load::tensor_from_view(v).to(at::kFloat);
}

}  // namespace

double LoraConfig::scale() const {
  return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

LoraConfig LoraConfig::from_json(const nlohmann::json& j) {
  LoraConfig c;
  SLLM_CHECK(j.is_object(), "lora: expected a mapping (r, alpha, dropout, target_modules)");
  c.r = config::get<int64_t>(j, "r");
  c.alpha = config::get<double>(j, "alpha");
  c.dropout = config::get<double>(j, "dropout");
  c.rslora = config::get<bool>(j, "rslora");
  const auto& t = j.at("target_modules");
  if (t.is_string()) {
    c.target_modules = {t.get<std::string>()};
  } else {
    SLLM_CHECK(t.is_array() && !t.empty(),
               "lora.target_modules: expected a list of module names or \"all-linear\"");
    c.target_modules = t.get<std::vector<std::string>>();
  }
  SLLM_CHECK(c.r > 0, "lora.r must be positive (got {})", c.r);
  SLLM_CHECK(c.alpha > 0, "lora.alpha must be positive (got {})", c.alpha);
  SLLM_CHECK(c.dropout >= 0 && c.dropout < 1, "lora.dropout must be in [0, 1) (got {})", c.dropout);
  return c;
}

std::vector<std::string> module_names(const model::LlamaModel& m) {
  std::vector<std::string> names;
  if (m.layers().empty()) return names;
  for_each_linear(m, [&](int64_t layer, const model::Linear& l) {
    if (layer != 0) return;
    for (const auto& p : l.parts) names.push_back(short_name(p.name));
  });
  return names;
}

std::shared_ptr<model::LlamaModel> inject(const model::LlamaModel& m, const LoraConfig& c,
                                          uint64_t seed) {
  const auto names = module_names(m);
  std::set<std::string> targets;
  for (const auto& t : c.target_modules) {
    if (t == "all-linear") {
      targets.insert(names.begin(), names.end());
      continue;
    }
    SLLM_CHECK(std::find(names.begin(), names.end(), t) != names.end(),
               "lora.target_modules: no module named '{}' in this model; it has: {} (or "
               "\"all-linear\")",
               t, fmt::join(names, ", "));
    targets.insert(t);
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const double scale = c.scale();
  return std::make_shared<model::LlamaModel>(m.map_linears([&](int64_t, const model::Linear& l) {
    model::Linear out = l;
    for (int j = 0; j < static_cast<int>(l.parts.size()); ++j) {
      if (!targets.count(short_name(l.parts[j].name))) continue;
      model::LoraAdapter a;
      a.part = j;
      // kaiming_uniform_(a=sqrt(5)) on [r, in]: bound = 1 / sqrt(fan_in).
      const double bound = 1.0 / std::sqrt(static_cast<double>(l.in_features()));
      a.A = at::empty({c.r, l.in_features()}, at::kFloat).uniform_(-bound, bound, gen);
      a.B = at::zeros({l.parts[j].rows, c.r}, at::kFloat);
      const auto dev = l.device();
      a.A = a.A.to(dev).requires_grad_(true);
      a.B = a.B.to(dev).requires_grad_(true);
      a.scale = scale;
      a.dropout = c.dropout;
      out.lora.push_back(std::move(a));
    }
    return out;
  }));
}

std::string trainable_summary(int64_t trainable, int64_t total) {
  auto commas = [](int64_t v) {
    std::string s = std::to_string(v), out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
      out += s[i];
    }
    return out;
  };
  return fmt::format("trainable params: {} || all params: {} || trainable%: {:.4f}",
                     commas(trainable), commas(total),
                     total > 0 ? 100.0 * static_cast<double>(trainable) / total : 0.0);
}

void save_peft(const model::LlamaModel& m, const LoraConfig& c, const std::string& dir,
               const std::string& base_model, bool replace) {
  std::vector<at::Tensor> keep;
  std::vector<io::TensorToWrite> tensors;
  std::set<std::string> modules;
  for_each_linear(m, [&](int64_t layer, const model::Linear& l) {
    for (const auto& a : l.lora) {
      const auto& part = l.parts.at(a.part).name;
      modules.insert(short_name(part));
      for (const auto& [ab, t] : {std::pair{"A", a.A}, std::pair{"B", a.B}}) {
        keep.push_back(t.detach().to(at::kCPU, at::kFloat).contiguous());
        const auto& k = keep.back();
        tensors.push_back(
            {peft_key(layer, part, ab), io::DType::f32, k.sizes().vec(), k.data_ptr(), k.nbytes()});
      }
    }
  });
  SLLM_CHECK(!tensors.empty(), "the model has no LoRA adapters to save");
  nlohmann::json cfg = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"r", c.r},
      {"lora_alpha", c.alpha},
      {"lora_dropout", c.dropout},
      {"target_modules", std::vector<std::string>(modules.begin(), modules.end())},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"use_rslora", c.rslora},
      {"use_dora", false},
      {"init_lora_weights", true},
      {"inference_mode", true},
      {"modules_to_save", nullptr},
      {"base_model_name_or_path", base_model},
      {"revision", nullptr}};
  io::AtomicDir out(dir, replace);
  io::write_file_atomic(out.file("adapter_config.json"), cfg.dump(2) + "\n");
  io::write_safetensors(out.file("adapter_model.safetensors"), tensors, {{"format", "pt"}});
  out.commit();
}

std::shared_ptr<model::LlamaModel> add_served_adapter(const model::LlamaModel& m,
                                                      const std::string& dir, int32_t id) {
  SLLM_CHECK(id > 0, "served adapter ids start at 1, got {}", id);
  const auto with = load_peft(m, dir);
  SLLM_CHECK(with->lm_head().lora.size() == m.lm_head().lora.size(),
             "adapter '{}' adapts lm_head, which served adapters cannot (the head sees only the "
             "sampled rows): merge it with `sllm merge` and serve the merged model instead",
             dir);
  // load_peft appends the new adapters after the ones m has: mark those as served adapter id.
  std::vector<size_t> before;
  (void)m.map_linears([&](int64_t, const model::Linear& l) {
    before.push_back(l.lora.size());
    return l;
  });
  size_t k = 0;
  return std::make_shared<model::LlamaModel>(
      with->map_linears([&](int64_t, const model::Linear& l) {
        model::Linear out = l;
        for (size_t i = before[k]; i < out.lora.size(); ++i) out.lora[i].served_id = id;
        ++k;
        return out;
      }));
}

std::shared_ptr<model::LlamaModel> load_peft(const model::LlamaModel& base, const std::string& dir,
                                             LoraConfig* config_out) {
  const auto cfg_path = (fs::path(dir) / "adapter_config.json").string();
  SLLM_CHECK(fs::is_directory(dir),
             "adapter '{}' is not a directory (expected a PEFT adapter "
             "with adapter_config.json and adapter_model.safetensors)",
             dir);
  SLLM_CHECK(fs::exists(cfg_path), "adapter '{}' has no adapter_config.json", dir);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(io::read_file(cfg_path));
  } catch (const nlohmann::json::exception& e) {
    SLLM_FAIL("{}: invalid JSON ({})", cfg_path, e.what());
  }
  SLLM_CHECK(j.value("peft_type", "") == "LORA", "{}: peft_type '{}' is not supported (LORA is)",
             cfg_path, j.value("peft_type", ""));
  SLLM_CHECK(!j.value("fan_in_fan_out", false), "{}: fan_in_fan_out adapters are not supported",
             cfg_path);
  SLLM_CHECK(!j.value("use_dora", false), "{}: DoRA adapters are not supported", cfg_path);
  SLLM_CHECK(j.value("bias", "none") == "none", "{}: bias '{}' is not supported (none is)",
             cfg_path, j.value("bias", ""));
  LoraConfig c;
  try {
    c.r = j.at("r").get<int64_t>();
    c.alpha = j.value("lora_alpha", static_cast<double>(c.r));
    c.dropout = j.value("lora_dropout", 0.0);
    c.rslora = j.value("use_rslora", false);
  } catch (const nlohmann::json::exception& e) {
    SLLM_FAIL("{}: bad r / lora_alpha / lora_dropout ({})", cfg_path, e.what());
  }
  SLLM_CHECK(c.r > 0, "{}: r must be positive", cfg_path);
  const double default_scale = c.scale();
  // Per-module rank / alpha overrides (PEFT rank_pattern / alpha_pattern) keyed by module name.
  auto pattern = [&](const char* key, const std::string& module) -> std::optional<double> {
    if (!j.contains(key) || !j[key].is_object()) return std::nullopt;
    for (const auto& [k, v] : j[key].items())
      if (module.size() >= k.size() && module.compare(module.size() - k.size(), k.size(), k) == 0)
        return v.get<double>();
    return std::nullopt;
  };
  const auto st_path = (fs::path(dir) / "adapter_model.safetensors").string();
  SLLM_CHECK(fs::exists(st_path), "adapter '{}' has no adapter_model.safetensors", dir);
  auto file = io::SafetensorsFile::open(st_path);
  std::set<std::string> used;
  std::set<std::string> modules;
  auto find = [&](const std::string& key) -> const io::TensorView* {
    if (const auto* v = file.find(key)) return v;
    // Files saved with the adapter name still in the key ("lora_A.default.weight").
    auto alt = key;
    alt.replace(alt.rfind(".weight"), 7, ".default.weight");
    return file.find(alt);
  };
  auto out = std::make_shared<model::LlamaModel>(base.map_linears([&](int64_t layer,
                                                                      const model::Linear& l) {
    model::Linear lin = l;
    for (int p = 0; p < static_cast<int>(l.parts.size()); ++p) {
      const auto& part = l.parts[p].name;
      const auto* va = find(peft_key(layer, part, "A"));
      const auto* vb = find(peft_key(layer, part, "B"));
      if (!va && !vb) continue;
      SLLM_CHECK(va && vb, "{}: layer {} {} has only one of lora_A / lora_B", st_path, layer, part);
      used.insert(va->name);
      used.insert(vb->name);
      model::LoraAdapter a;
      a.part = p;
      a.A = view_of(*va);
      a.B = view_of(*vb);
      const int64_t r = a.A.size(0);
      SLLM_CHECK(a.A.dim() == 2 && a.B.dim() == 2 && a.A.size(1) == l.in_features() &&
                     a.B.size(0) == l.parts[p].rows && a.B.size(1) == r,
                 "{}: layer {} {}: lora_A {} / lora_B {} do not fit a [{} x {}] module", st_path,
                 layer, part, c10::str(a.A.sizes()), c10::str(a.B.sizes()), l.parts[p].rows,
                 l.in_features());
      const std::string full = fmt::format("model.layers.{}.{}", layer, part);
      const double alpha = pattern("alpha_pattern", full).value_or(c.alpha);
      a.scale = pattern("rank_pattern", full) || pattern("alpha_pattern", full) || r != c.r
                    ? (c.rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / r)
                    : default_scale;
      a.dropout = c.dropout;
      const auto dev = l.device();
      a.A = a.A.to(dev);
      a.B = a.B.to(dev);
      modules.insert(short_name(part));
      lin.lora.push_back(std::move(a));
    }
    return lin;
  }));
  for (const auto& t : file.tensors())
    SLLM_CHECK(used.count(t.name), "{}: tensor '{}' does not match any module of the model",
               st_path, t.name);
  SLLM_CHECK(!used.empty(), "{}: no LoRA tensors found", st_path);
  c.target_modules.assign(modules.begin(), modules.end());
  if (config_out) *config_out = c;
  return out;
}

std::shared_ptr<model::LlamaModel> merge(const model::LlamaModel& m) {
  at::NoGradGuard no_grad;
  return std::make_shared<model::LlamaModel>(m.map_linears([&](int64_t, const model::Linear& l) {
    const auto* dense = l.get_if<model::DenseFormat>();
    if (l.lora.empty() && dense) return l;
    std::vector<at::Tensor> w;
    for (int p = 0; p < static_cast<int>(l.parts.size()); ++p) w.push_back(l.dense_part(p).clone());
    for (const auto& a : l.lora)
      w[a.part] += (a.B.to(at::kFloat).matmul(a.A.to(at::kFloat)) * a.scale).to(w[a.part].device());
    const auto dtype = dense ? dense->w.scalar_type() : at::kFloat;
    model::Linear out{at::cat(w, 0).to(dtype).contiguous(), l.bias};
    out.parts = l.parts;
    return out;
  }));
}

}  // namespace sllm::lora
