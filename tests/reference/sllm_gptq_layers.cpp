// What sllm's GPTQ did on the first layers of a model, for check_gptq.py: runs
// quantize::quantize_model (the driver `sllm quantize --method gptq` runs, true-sequential) on
// the first LAYERS decoder layers and writes, for every Linear it quantized, the weight and the
// Hessian it was given, its integer codes / scales / zeros / g_idx, and sllm's RTN of the same
// weight (same bits, group and symmetry) -- so that an independent GPTQ can be run on the very
// same inputs and both can be compared with RTN.
//
//   sllm_gptq_layers MODEL CALIB LAYERS BITS GROUP SYM(0|1) ACT_ORDER(0|1) OUT [THREADS [SAMPLES]]
//
// SAMPLES: calibration windows of 256 tokens (default 32, as `sllm quantize`).
// OUT is a safetensors file with tensors "L<layer>.s<stage>.<what>", what in w, h, q, scales,
// zeros, g_idx (act-order only), rtn_q, rtn_scales, rtn_zeros, and "calib": the calibration
// token ids [samples, seqlen] (int32). Exit 1 with one line on stderr on any error.
#include <ATen/ATen.h>

#include <cstdint>
#include <exception>
#include <iostream>
#include <list>
#include <string>
#include <vector>

#include "apps/common.h"
#include "io/safetensors.h"
#include "quant/intq.h"
#include "quantize/calibration.h"
#include "quantize/quantizer.h"

namespace {

using sllm::io::DType;

// Keeps every written buffer alive until the file is written.
struct Writer {
  std::list<std::vector<uint8_t>> bytes;
  std::vector<sllm::io::TensorToWrite> tensors;

  template <typename T>
  void add(const std::string& name, DType dt, std::vector<int64_t> shape, const T* p, size_t n) {
    auto& b = bytes.emplace_back(reinterpret_cast<const uint8_t*>(p),
                                 reinterpret_cast<const uint8_t*>(p) + n * sizeof(T));
    tensors.push_back({name, dt, std::move(shape), b.data(), b.size()});
  }
  void add(const std::string& name, const at::Tensor& t) {
    auto c = t.to(at::kFloat).contiguous();
    add(name, DType::f32, c.sizes().vec(), c.data_ptr<float>(), static_cast<size_t>(c.numel()));
  }
  void add(const std::string& prefix, const sllm::quant::IntQWeight& q) {
    const int64_t g = q.groups();
    add(prefix + "q", DType::u8, {q.out, q.in}, q.q.data(), q.q.size());
    add(prefix + "scales", DType::f32, {q.out, g}, q.scales.data(), q.scales.size());
    add(prefix + "zeros", DType::f32, {q.out, g}, q.zeros.data(), q.zeros.size());
  }
};

bool flag(const char* s) {
  const std::string v(s);
  if (v != "0" && v != "1") throw std::runtime_error("a flag must be 0 or 1, got '" + v + "'");
  return v == "1";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 9 || argc > 11) {
    std::cerr << "usage: sllm_gptq_layers MODEL CALIB LAYERS BITS GROUP SYM ACT_ORDER OUT "
                 "[THREADS [SAMPLES]]\n";
    return 2;
  }
  try {
    auto cfg = sllm::options::defaults(sllm::apps::model_group().table());
    cfg["model"] = argv[1];
    cfg["threads"] = argc >= 10 ? std::stoll(argv[9]) : 2;
    cfg["dequantize"] = true;  // GPTQ starts from dense weights, as sllm quantize does
    const auto m = sllm::apps::load_from_config(cfg);
    sllm::quantize::CalibOptions co;
    if (argc == 11) co.samples = std::stoll(argv[10]);
    const auto calib = sllm::quantize::load_calibration(argv[2], *m.tokenizer, co);

    sllm::quantize::QuantizeOptions o;
    o.method = "gptq";
    o.max_layers = std::stoll(argv[3]);
    o.bits = o.gptq.bits = std::stoi(argv[4]);
    o.group_size = o.gptq.group_size = std::stoll(argv[5]);
    o.sym = o.gptq.sym = flag(argv[6]);
    o.gptq.act_order = flag(argv[7]);
    Writer out;
    const auto ids = calib.to(at::kInt).contiguous();
    out.add("calib", DType::i32, ids.sizes().vec(), ids.data_ptr<int32_t>(),
            static_cast<size_t>(ids.numel()));
    o.gptq_observer = [&](const sllm::quantize::GptqStage& s) {
      const auto p = "L" + std::to_string(s.layer) + ".s" + std::to_string(s.stage) + ".";
      out.add(p + "w", s.weight);
      out.add(p + "h", s.hessian);
      out.add(p, *s.result);
      if (!s.result->g_idx.empty())
        out.add(p + "g_idx", DType::i32, {s.result->in}, s.result->g_idx.data(),
                s.result->g_idx.size());
      auto w = s.weight.to(at::kFloat).contiguous();
      sllm::quant::RtnOptions r;
      r.bits = o.bits;
      r.group_size = o.group_size;
      r.sym = o.sym;
      out.add(p + "rtn_", sllm::quant::quantize_rtn(w.data_ptr<float>(), w.size(0), w.size(1), r));
    };
    sllm::quantize::quantize_model(*m.model, o, calib);
    sllm::io::write_safetensors(argv[8], out.tensors,
                                {{"calib_samples", std::to_string(calib.size(0))},
                                 {"calib_seqlen", std::to_string(calib.size(1))},
                                 {"damp", std::to_string(o.gptq.damp)}});
  } catch (const std::exception& e) {
    std::cerr << "sllm_gptq_layers: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
