// sllm quantize: a GGUF file or HF directory -> a Hugging Face directory whose decoder Linears are
// NF4/FP4 in the transformers/bitsandbytes 4-bit layout (what save_pretrained writes for a model
// loaded with BitsAndBytesConfig(load_in_4bit=True)); transformers and sllm both load it.
#include <ATen/Parallel.h>

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "apps/apps.h"
#include "apps/common.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/timer.h"

namespace fs = std::filesystem;

namespace sllm::apps {
namespace {

// Bytes of a model file, or of the regular files directly inside a model directory.
uint64_t size_on_disk(const std::string& path) {
  if (!fs::is_directory(path)) return fs::file_size(path);
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(path))
    if (e.is_regular_file()) total += e.file_size();
  return total;
}

bool parse_bool(const nlohmann::json& v, const char* key) {
  if (v.is_boolean()) return v.get<bool>();
  SLLM_CHECK(v.is_string() && (v == "true" || v == "false"), "{} must be true or false, got {}",
             key, v.dump());
  return v == "true";
}

}  // namespace

nlohmann::json quantize_defaults() {
  return merged(model_defaults(),
                {{"method", "nf4"}, {"out", nullptr}, {"double_quant", "true"}, {"blocksize", 64}});
}

int run_quantize(const nlohmann::json& cfg) {
  SLLM_CHECK(cfg["model"].is_string(), "no model given: pass --model <file.gguf | hf-directory>");
  SLLM_CHECK(cfg["out"].is_string(), "give the output directory with --out DIR");
  SLLM_CHECK(!cfg["adapter"].is_string(),
             "quantize takes no --adapter: merge the adapter first (sllm merge), then quantize");
  const auto method = config::get<std::string>(cfg, "method");
  SLLM_CHECK(method == "nf4" || method == "fp4", "--method must be nf4 or fp4, got '{}'", method);
  const bool dq = parse_bool(cfg["double_quant"], "double_quant");
  const auto blocksize = config::get<int64_t>(cfg, "blocksize");
  SLLM_CHECK(blocksize >= 64 && blocksize <= 4096 && (blocksize & (blocksize - 1)) == 0,
             "--blocksize must be a power of two in 64..4096, got {}", blocksize);
  const std::string model = cfg["model"].get<std::string>();
  const std::string out = cfg["out"].get<std::string>();
  // Fail before the slow part rather than after it.
  SLLM_CHECK(!fs::exists(out) || fs::is_empty(out),
             "output directory '{}' exists and is not empty; choose a new path", out);

  const auto threads = config::get<int64_t>(cfg, "threads");
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  load::LoadOptions o;
  o.dtype = load::parse_dtype(config::get<std::string>(cfg, "dtype"));
  o.device = load::parse_device(config::get<std::string>(cfg, "device"));
  o.quantize = method;
  o.blocksize = blocksize;
  o.double_quant = dq;

  Timer total;
  auto m = load::load_model(model, o);
  const double t_quant = total.seconds();
  Timer tw;
  load::save_hf_dir(m, out, o.dtype);
  const double t_write = tw.seconds();

  int64_t modules = 0, params = 0;
  for (const auto& L : m.model->layers())
    for (const auto* l : {&L.qkv, &L.o, &L.gate_up, &L.down})
      if (l->format == model::WeightFormat::nf4) {
        modules += static_cast<int64_t>(l->parts.size());
        params += l->in_features() * l->out_features();
      }
  const uint64_t before = size_on_disk(model), after = size_on_disk(out);
  fmt::print("quantized      {} -> {}\n", model, out);
  fmt::print("method         {} (bitsandbytes layout), blocksize {}, double quant {}\n", method,
             blocksize, dq);
  fmt::print("4-bit modules  {} ({:.1f} M parameters); embeddings, norms, lm_head kept dense {}\n",
             modules, params / 1e6, config::get<std::string>(cfg, "dtype"));
  const bool smaller = after <= before;
  fmt::print("size on disk   {} -> {} ({:.2f}x {})\n", memory::format_bytes(before),
             memory::format_bytes(after),
             smaller ? double(before) / double(std::max<uint64_t>(after, 1))
                     : double(after) / double(std::max<uint64_t>(before, 1)),
             smaller ? "smaller" : "larger");
  fmt::print("time           {:.2f} s (load + quantize {:.2f} s, write {:.2f} s)\n",
             total.seconds(), t_quant, t_write);
  return 0;
}

}  // namespace sllm::apps
