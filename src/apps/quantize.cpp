// sllm quantize: a GGUF file or HF directory -> a Hugging Face directory whose decoder Linears are
// quantized, in the layout the ecosystem loads: GPTQ v1 (gptq, rtn), AWQ GEMM (awq),
// bitsandbytes int8 (int8) or bitsandbytes 4-bit (nf4, fp4). Prints and writes a summary: sizes,
// time, and the perplexity before/after on a text when --ppl is given.
#include <ATen/Parallel.h>

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "apps/apps.h"
#include "apps/common.h"
#include "apps/perplexity.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/timer.h"
#include "io/atomic_write.h"
#include "quantize/calibration.h"
#include "quantize/lm_head.h"
#include "quantize/quantizer.h"

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
  SLLM_CHECK(v.is_string() && (v == "true" || v == "false"), "--{} must be true or false, got {}",
             key, v.dump());
  return v == "true";
}

const options::Group<quantize::CalibOptions>& calib_group() {
  using G = options::Group<quantize::CalibOptions>;
  using C = quantize::CalibOptions;
  static const G g{
      G::plain({"calib", nullptr, "calibration text (.txt) or dataset (.jsonl) for gptq / awq",
                "--calib"}),
      G::member({"calib_samples", 32, "calibration windows", "--calib-samples"}, &C::samples),
      G::member({"calib_seqlen", 256, "tokens per calibration window", "--calib-seqlen"},
                &C::seqlen),
      G::member({"seed", 0, "which calibration windows", "--seed"}, &C::seed),
  };
  return g;
}

quantize::QuantizeOptions options_from(const nlohmann::json& cfg, const std::string& method) {
  quantize::QuantizeOptions o;
  o.method = method;
  o.bits = config::get<int>(cfg, "bits");
  if (o.bits == 0) o.bits = method == "int8" ? 8 : 4;
  o.group_size = config::get<int64_t>(cfg, "group_size");
  o.sym = cfg["sym"].is_null() ? method == "gptq" : parse_bool(cfg["sym"], "sym");
  o.gptq.bits = o.bits;
  o.gptq.group_size = o.group_size;
  o.gptq.sym = o.sym;
  o.gptq.act_order = parse_bool(cfg["desc_act"], "desc-act");
  o.gptq.static_groups = parse_bool(cfg["static_groups"], "static-groups");
  o.gptq.damp = config::get<double>(cfg, "damp");
  SLLM_CHECK(o.gptq.damp > 0 && o.gptq.damp < 1, "--damp must be in (0, 1), got {}", o.gptq.damp);
  o.true_sequential = parse_bool(cfg["true_sequential"], "true-sequential");
  o.awq.bits = o.bits;
  o.awq.group_size = o.group_size;
  o.int8_threshold = config::get<double>(cfg, "threshold");
  SLLM_CHECK(o.int8_threshold >= 0, "--threshold must be >= 0, got {}", o.int8_threshold);
  if (method == "awq")
    SLLM_CHECK(cfg["sym"].is_null() || !o.sym,
               "awq is asymmetric (zero points) in the AWQ GEMM layout; drop --sym");
  return o;
}

std::string method_line(const std::string& method, const quantize::QuantizeOptions& o,
                        const nlohmann::json& cfg) {
  if (method == "nf4" || method == "fp4")
    return fmt::format("{} (bitsandbytes 4-bit), blocksize {}, double quant {}", method,
                       config::get<int64_t>(cfg, "blocksize"),
                       parse_bool(cfg["double_quant"], "double-quant"));
  if (method == "int8")
    return fmt::format("LLM.int8() (bitsandbytes int8), outlier threshold {}", o.int8_threshold);
  const std::string group =
      o.group_size > 0 ? fmt::format("group {}", o.group_size) : std::string("per-channel");
  std::string s = fmt::format("{} int{} {}, {}", method, o.bits,
                              method == "awq" ? "asym" : (o.sym ? "sym" : "asym"), group);
  if (method == "gptq")
    s += fmt::format(", damp {}{}{}{}", o.gptq.damp, o.gptq.act_order ? ", act-order" : "",
                     o.gptq.static_groups ? ", static groups" : "",
                     o.true_sequential ? ", true-sequential" : "");
  s += method == "awq" ? " (AWQ GEMM layout)" : " (GPTQ v1 layout)";
  return s;
}

}  // namespace

options::Table quantize_options() {
  return options::join(
      {model_group().table(),
       {{"method", nullptr, "rtn | int8 | gptq | awq | nf4 | fp4", "--method"},
        {"out", nullptr, "output directory (must not exist)", "-o,--out"},
        {"bits", 0, "rtn: 2, 4, 8; gptq: 2, 4, 8; awq: 4 (0: 4, or 8 for int8)", "--bits"},
        {"group_size", 128, "input columns per scale (-1: per output channel)", "--group-size"},
        {"sym", nullptr, "true | false: symmetric (no zero points); gptq default true", "--sym"},
        {"desc_act", "true",
         "gptq: true | false: act-order, columns in decreasing Hessian diagonal", "--desc-act"},
        {"static_groups", "false", "gptq: true | false: group scales from the original weight",
         "--static-groups"},
        {"true_sequential", "true",
         "gptq: true | false: re-collect inputs after each sub-block (k,v,q -> o -> up,gate -> "
         "down)",
         "--true-sequential"},
        {"damp", 0.01, "gptq: dampening, fraction of the Hessian's mean diagonal", "--damp"},
        {"threshold", 6.0, "int8: outlier threshold on |x| (0: none)", "--threshold"},
        {"lm_head", "keep",
         "keep | int8: the output head dense as loaded, or row-wise int8 (bitsandbytes' int8 "
         "layout; only sllm reads it next to gptq/awq/rtn/nf4/fp4)",
         "--lm-head"}},
       calib_group().table(),
       {{"ppl", nullptr, "text file: perplexity before/after and KL divergence", "--ppl"},
        {"ctx", 512, "perplexity window length", "--ctx"},
        {"double_quant", "true", "nf4/fp4: true | false: also quantize the absmax values",
         "--double-quant"},
        {"blocksize", 64, "nf4/fp4: elements per absmax block, 64..4096", "--blocksize"}}});
}

int run_quantize(const nlohmann::json& cfg) {
  SLLM_CHECK(cfg["model"].is_string(), "no model given: pass --model <file.gguf | hf-directory>");
  SLLM_CHECK(cfg["method"].is_string(),
             "give the method with --method rtn | int8 | gptq | awq | nf4 | fp4");
  SLLM_CHECK(cfg["out"].is_string(), "give the output directory with --out DIR");
  SLLM_CHECK(!cfg["adapter"].is_string(),
             "quantize takes no --adapter: merge the adapter first (sllm merge), then quantize");
  const auto method = cfg["method"].get<std::string>();
  const bool bnb4 = method == "nf4" || method == "fp4";
  SLLM_CHECK(bnb4 || method == "rtn" || method == "int8" || method == "gptq" || method == "awq",
             "unknown --method '{}': use rtn, int8, gptq, awq, nf4 or fp4", method);
  const auto o = options_from(cfg, method);
  const auto lm_head = config::get<std::string>(cfg, "lm_head");
  SLLM_CHECK(lm_head == "keep" || lm_head == "int8", "unknown --lm-head '{}': use keep or int8",
             lm_head);
  const std::string model = cfg["model"].get<std::string>();
  const std::string out = cfg["out"].get<std::string>();
  // Fail before the slow part rather than after it.
  SLLM_CHECK(!fs::exists(out) || fs::is_empty(out),
             "output directory '{}' exists and is not empty; choose a new path", out);
  if (quantize::needs_calibration(method))
    SLLM_CHECK(cfg["calib"].is_string(),
               "{} needs calibration text: give --calib FILE (.txt, or .jsonl in the training "
               "formats)",
               method);
  std::optional<std::string> ppl_text;
  if (cfg["ppl"].is_string()) ppl_text = io::read_file(cfg["ppl"].get<std::string>());
  const auto ctx = config::get<int64_t>(cfg, "ctx");

  const auto threads = config::get<int64_t>(cfg, "threads");
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  auto lo = model_group().fill(cfg);
  lo.dequantize = true;  // quantizing starts from dense weights (a GGUF file's dequantized)

  Timer total;
  auto base = load::load_model(model, lo);
  for (const auto& L : base.model->layers())
    SLLM_CHECK(L.qkv.is<model::DenseFormat>(),
               "{} is already quantized ({}); quantize the original dense model", model,
               L.qkv.format_name());
  if (!bnb4) quantize::check_options(*base.model, o);
  std::optional<PplResult> before;
  std::vector<int32_t> ppl_ids;
  if (ppl_text) {
    ppl_ids = ppl_tokens(*base.tokenizer, *ppl_text, cfg["ppl"].get<std::string>());
    before = perplexity(*base.model, ppl_ids, ctx, nullptr, "perplexity before");
  }
  at::Tensor calib;
  if (quantize::needs_calibration(method)) {
    calib = quantize::load_calibration(cfg["calib"].get<std::string>(), *base.tokenizer,
                                       calib_group().fill(cfg));
  }
  Timer tq;
  load::LoadedModel q;
  if (bnb4) {
    base.model.reset();  // the loader quantizes module by module from the file
    lo.quantize = method;
    lo.blocksize = config::get<int64_t>(cfg, "blocksize");
    lo.double_quant = parse_bool(cfg["double_quant"], "double-quant");
    SLLM_CHECK(
        lo.blocksize >= 64 && lo.blocksize <= 4096 && (lo.blocksize & (lo.blocksize - 1)) == 0,
        "--blocksize must be a power of two in 64..4096, got {}", lo.blocksize);
    q = load::load_model(model, lo);
  } else {
    q = base;
    q.model = quantize::quantize_model(*base.model, o, calib);
  }
  // The head of a bitsandbytes int8 directory runs with the checkpoint's one outlier threshold;
  // elsewhere it has none (docs/quantization.md).
  if (lm_head == "int8")
    q.model = quantize::quantize_lm_head(*q.model, method == "int8" ? o.int8_threshold : 0.0);
  const double t_quant = tq.seconds();
  std::optional<PplResult> after;
  if (ppl_text) {
    // With the base still in memory the KL divergence comes for free; nf4 dropped it.
    after = perplexity(*q.model, ppl_ids, ctx, base.model ? base.model.get() : nullptr,
                       "perplexity after");
  }
  Timer tw;
  load::SaveOptions so;
  if (method == "gptq" || method == "rtn")  // the settings a Linear does not record
    so.quantization_config_extra = {{"damp_percent", o.gptq.damp},
                                    {"static_groups", o.gptq.static_groups},
                                    {"true_sequential", o.true_sequential}};
  load::save_hf_dir(q, out, lo.dtype, so);
  const double t_write = tw.seconds();

  int64_t modules = 0, params = 0;
  for (const auto& L : q.model->layers())
    for (const auto& [name, l] : L.linears())
      if (!l.is<model::DenseFormat>()) {
        modules += static_cast<int64_t>(l.parts.size());
        params += l.in_features() * l.out_features();
      }
  const uint64_t size_before = size_on_disk(model), size_after = size_on_disk(out);
  nlohmann::json s = {{"model", model},
                      {"out", out},
                      {"method", method},
                      {"scheme", method_line(method, o, cfg)},
                      {"bits", bnb4 ? 4 : o.bits},
                      {"group_size", bnb4 ? nlohmann::json(config::get<int64_t>(cfg, "blocksize"))
                                     : method == "int8" ? nlohmann::json()  // row-wise
                                                        : nlohmann::json(o.group_size)},
                      {"quantized_modules", modules},
                      {"lm_head", lm_head},
                      {"lm_head_format", q.model->lm_head().format_name()},
                      {"lm_head_bytes", q.model->lm_head().weight_bytes()},
                      {"quantized_parameters", params},
                      {"size_before_bytes", size_before},
                      {"size_after_bytes", size_after},
                      {"quantize_seconds", t_quant},
                      {"write_seconds", t_write},
                      {"total_seconds", total.seconds()},
                      {"peak_rss_bytes", memory::peak_rss_bytes()}};
  if (calib.defined()) {
    s["calib"] = cfg["calib"];
    s["calib_samples"] = calib.size(0);
    s["calib_seqlen"] = calib.size(1);
  }
  fmt::print("quantized      {} -> {}\n", model, out);
  fmt::print("method         {}\n", method_line(method, o, cfg));
  fmt::print("modules        {} ({:.1f} M parameters); embeddings, norms kept dense {}\n", modules,
             params / 1e6, config::get<std::string>(cfg, "dtype"));
  fmt::print("lm_head        {}\n", quantize::describe_lm_head(*q.model));
  fmt::print("size on disk   {} -> {} ({:.2f}x)\n", memory::format_bytes(size_before),
             memory::format_bytes(size_after),
             double(size_before) / double(std::max<uint64_t>(size_after, 1)));
  fmt::print("time           {:.1f} s (quantize {:.1f} s, write {:.1f} s)\n", total.seconds(),
             t_quant, t_write);
  if (before && after) {
    const double d = 100.0 * (after->perplexity / before->perplexity - 1.0);
    s["ppl_file"] = cfg["ppl"];
    s["ppl_before"] = before->perplexity;
    s["ppl_after"] = after->perplexity;
    s["delta_ppl_pct"] = d;
    fmt::print("perplexity     {:.4f} -> {:.4f} ({:+.2f}%) on {} ({} tokens, ctx {})\n",
               before->perplexity, after->perplexity, d, cfg["ppl"].get<std::string>(),
               after->scored, ctx);
    if (after->has_ref) {
      s["mean_kld"] = after->mean_kld;
      s["same_top_token_pct"] = after->same_top;
      fmt::print("vs original    mean KL divergence {:.5f}, same top token {:.2f}%\n",
                 after->mean_kld, after->same_top);
    }
  }
  io::write_file_atomic((fs::path(out) / "sllm_quantize_summary.json").string(), s.dump(2) + "\n");
  return 0;
}

}  // namespace sllm::apps
