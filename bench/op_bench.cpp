// Op micro-benchmarks at decode shapes of the default model: each sllm op against its
// plain-libtorch reference, medians of repeated runs in one process.
//   build/bench/sllm_op_bench [threads] [all|nf4|intq|gguf]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cpu/gguf_quant.h"
#include "kernels/cpu/intq_matmul.h"
#include "kernels/cpu/nf4.h"
#include "kernels/cpu/nf4_matmul.h"
#include "ops/gguf.h"
#include "ops/intq.h"
#include "ops/nf4.h"
#include "ops/ops.h"
#include "quant/nf4.h"

namespace {
double median_us(const std::function<void()>& f, int reps = 200) {
  for (int i = 0; i < 10; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - a).count());
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

// A random group-wise weight (values, scales and zeros as RTN would give them).
sllm::ops::IntQTensors random_intq(int64_t out, int64_t in, int bits, int64_t group_size) {
  const int64_t groups = (in + group_size - 1) / group_size;
  auto q = at::randint(0, 1 << bits, {out, in}, at::kByte);
  auto s = at::rand({out, groups}) * 0.01 + 0.001;
  auto z = at::randint(0, 1 << bits, {out, groups}).to(at::kFloat);
  return sllm::ops::make_intq_tensors(q.data_ptr<uint8_t>(), s.data_ptr<float>(),
                                      z.data_ptr<float>(), nullptr, bits, group_size, out, in);
}

sllm::ops::Int8Tensors random_int8(int64_t out, int64_t in) {
  auto q = at::randint(-127, 128, {out, in}, at::kChar);
  auto scb = at::rand({out}) * 0.1 + 0.05;
  return sllm::ops::make_int8_tensors(q.data_ptr<int8_t>(), scb.data_ptr<float>(), out, in, 6.0);
}

// Integer-quantized decoder linears (the default model's shapes, group 128), each case over 30
// distinct weights in turn (one per layer, so nothing stays in cache between calls as in real
// decode): dense fp32 at::linear vs intq_linear (int4 / int8 storage) and LLM.int8() int8_linear,
// one row (decode) through 32 (batched decode), and 512-row prefill.
void bench_intq() {
  using sllm::ops::intq_linear;
  constexpr size_t kLayers = 30;
  fmt::print(
      "\nint-quantized linears, 30 weights in turn (us per call; speedup = dense f32 / int4)\n"
      "{:<22} {:>10} {:>10} {:>8} {:>10} {:>10} {:>10}\n",
      "rows x W[out x in]", "dense f32", "int4 g128", "speedup", "int8 g128", "llm.int8",
      "int4 dq+mm");
  for (auto [out, in] : {std::pair<int64_t, int64_t>{576, 576}, {3072, 576}, {576, 1536}}) {
    std::vector<at::Tensor> dense(kLayers);
    std::vector<sllm::ops::IntQTensors> w4(kLayers), w8(kLayers);
    std::vector<sllm::ops::Int8Tensors> i8(kLayers);
    for (size_t l = 0; l < kLayers; ++l) {
      dense[l] = (at::randn({out, in}) * 0.05).contiguous();
      w4[l] = random_intq(out, in, 4, 128);
      w8[l] = random_intq(out, in, 8, 128);
      i8[l] = random_int8(out, in);
    }
    for (int64_t rows : {1, 2, 4, 8, 16, 32, 48, 64, 512}) {
      auto xt = at::randn({rows, in});
      size_t l0 = 0, l1 = 0, l2 = 0, l3 = 0, l4 = 0;
      const int reps = rows >= 64 ? 20 : 200;
      const double td = median_us([&] { at::linear(xt, dense[l0++ % kLayers]); }, reps);
      const double t4 = median_us([&] { intq_linear(xt, w4[l1++ % kLayers], at::Tensor()); }, reps);
      const double t8 = median_us([&] { intq_linear(xt, w8[l2++ % kLayers], at::Tensor()); }, reps);
      const double ti =
          median_us([&] { sllm::ops::int8_linear(xt, i8[l3++ % kLayers], at::Tensor()); }, reps);
      const double tq = median_us(
          [&] { at::linear(xt, sllm::ops::intq_dequantize(w4[l4++ % kLayers], at::kFloat)); },
          reps);
      fmt::print("{:<22} {:>10.1f} {:>10.1f} {:>7.2f}x {:>10.1f} {:>10.1f} {:>10.1f}\n",
                 fmt::format("{:>3} x W[{}x{}]", rows, out, in), td, t4, td / t4, t8, ti, tq);
    }
  }
  // One decode token through every decoder linear of the default model (30 layers of fused
  // qkv 960x576, o 576x576, gate_up 3072x576, down 576x1536), fp32 vs int4 group 128.
  struct Layer {
    at::Tensor d[4];
    sllm::ops::IntQTensors q[4];
  };
  const std::pair<int64_t, int64_t> shapes[4] = {{960, 576}, {576, 576}, {3072, 576}, {576, 1536}};
  std::vector<Layer> layers(kLayers);
  for (auto& L : layers)
    for (int k = 0; k < 4; ++k) {
      L.d[k] = (at::randn({shapes[k].first, shapes[k].second}) * 0.05).contiguous();
      L.q[k] = random_intq(shapes[k].first, shapes[k].second, 4, 128);
    }
  auto xs = std::vector<at::Tensor>{at::randn({1, 576}), at::randn({1, 1536})};
  const double tdense = median_us(
      [&] {
        for (auto& L : layers)
          for (int k = 0; k < 4; ++k) at::linear(xs[k == 3], L.d[k]);
      },
      30);
  const double tint4 = median_us(
      [&] {
        for (auto& L : layers)
          for (int k = 0; k < 4; ++k) intq_linear(xs[k == 3], L.q[k], at::Tensor());
      },
      30);
  fmt::print(
      "\none token, all 120 decoder linears: dense f32 {:.0f} us, int4 g128 {:.0f} us "
      "({:.2f}x)\n",
      tdense, tint4, tdense / tint4);
}

// GGUF linears at prefill shapes of the default model (SmolLM2-135M's q|k|v, o, gate|up, down),
// each over 30 distinct weights in turn: dense fp32 at::linear on weights dequantized beforehand
// (a floor for the dequantize + GEMM route), dequantize + at::linear per call, and gguf_linear
// with fp32 activations (dequantized tiles + at::mm) and with int8 activation blocks (AVX-512: the
// int8 panels). Q8_0, and Q4_K where the row width allows it (multiples of 256).
void bench_gguf() {
  fmt::print(
      "\nGGUF linears at prefill shapes, 30 weights in turn (us per call)\n{:<30} {:>10} {:>10} "
      "{:>10} {:>10} {:>8}\n",
      "type rows x W[out x in]", "dense f32", "dq+linear", "gguf f32", "gguf q8", "q8/dq");
  for (const uint32_t type : {8u, 12u}) {
    for (auto [out, in] :
         {std::pair<int64_t, int64_t>{960, 576}, {576, 576}, {3072, 576}, {576, 1536}}) {
      if (type == 12 && in % 256 != 0) continue;
      std::vector<at::Tensor> dense(30);
      std::vector<sllm::ops::GgufTensors> f32w(30), q8w(30);
      const int64_t bytes = sllm::kernels::cpu::quant_bytes(type, out * in);
      for (size_t l = 0; l < dense.size(); ++l) {
        auto wd = (at::randn({out, in}) * 0.05).contiguous();
        auto blocks = at::empty({out, bytes / out}, at::kByte);
        sllm::kernels::cpu::quantize(type, wd.data_ptr<float>(), blocks.data_ptr<uint8_t>(),
                                     out * in);
        f32w[l] = sllm::ops::make_gguf_tensors(blocks, type, out, in, false);
        q8w[l] = sllm::ops::make_gguf_tensors(blocks, type, out, in, true);
        dense[l] = sllm::ops::gguf_dequantize(f32w[l], at::kFloat);
      }
      for (int64_t rows : {16, 32, 64, 128, 512}) {
        auto xt = at::randn({1, rows, in});
        size_t l0 = 0, l1 = 0, l2 = 0, l3 = 0;
        const int reps = rows >= 128 ? 20 : 60;
        const double td = median_us([&] { at::linear(xt, dense[l0++ % 30]); }, reps);
        const double tq = median_us(
            [&] { at::linear(xt, sllm::ops::gguf_dequantize(f32w[l1++ % 30], at::kFloat)); }, reps);
        const double tf =
            median_us([&] { sllm::ops::gguf_linear(xt, f32w[l2++ % 30], at::Tensor()); }, reps);
        const double t8 =
            median_us([&] { sllm::ops::gguf_linear(xt, q8w[l3++ % 30], at::Tensor()); }, reps);
        fmt::print("{:<30} {:>10.1f} {:>10.1f} {:>10.1f} {:>10.1f} {:>7.2f}x\n",
                   fmt::format("{} {:>3} x W[{}x{}]", type == 8 ? "Q8_0" : "Q4_K", rows, out, in),
                   td, tq, tf, t8, tq / t8);
      }
    }
  }
}
}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) at::set_num_threads(std::atoi(argv[1]));
  const std::string section = argc > 2 ? argv[2] : "all";
  at::NoGradGuard g;
  if (section == "intq" || section == "gguf") {
    fmt::print("threads {}\n", at::get_num_threads());
    if (section == "intq") bench_intq();
    if (section == "gguf") bench_gguf();
    return 0;
  }
  fmt::print("threads {}\n{:<34} {:>10} {:>10}\n", at::get_num_threads(), "op", "sllm us",
             "ref us");
  auto x = at::randn({1, 576}), w = at::randn({576});
  fmt::print("{:<34} {:>10.1f} {:>10.1f}\n", "rms_norm 1x576",
             median_us([&] { sllm::ops::rms_norm(x, w, 1e-5); }),
             median_us([&] { sllm::ops::ref::rms_norm(x, w, 1e-5); }));
  auto gu = at::randn({1, 3072});
  fmt::print("{:<34} {:>10.1f} {:>10.1f}\n", "silu_mul 1x3072",
             median_us([&] { sllm::ops::silu_mul(gu); }),
             median_us([&] { sllm::ops::ref::silu_mul(gu); }));
  auto q = at::randn({1, 9, 64}), c = at::randn({1, 32}), sn = at::randn({1, 32});
  fmt::print("{:<34} {:>10.1f} {:>10.1f}\n", "rope 1x9x64",
             median_us([&] { sllm::ops::rope(q, c, sn); }),
             median_us([&] { sllm::ops::ref::rope(q, c, sn); }));
  // One decode token through a 4-bit weight: fused NF4 GEMV vs dense fp32 at::linear (the
  // "ref" column here) and vs dequantize + linear.
  for (auto [out, in] : {std::pair<int64_t, int64_t>{576, 1536}, {1536, 576}}) {
    auto wd = (at::randn({out, in}) * 0.05).contiguous();
    auto q = sllm::quant::quantize_nf4(wd.data_ptr<float>(), {out, in});
    const auto absmax = sllm::quant::dequantized_absmax(q);
    auto w4 = sllm::ops::make_nf4_tensors(
        q.weight.data(), absmax.data(),
        sllm::kernels::cpu::quant4_code(sllm::kernels::cpu::Quant4Type::kNf4), out, in, 64);
    auto xt = at::randn({1, in});
    fmt::print("{:<34} {:>10.1f} {:>10.1f}\n", fmt::format("nf4_linear 1x{} W[{}x{}]", in, out, in),
               median_us([&] { sllm::ops::nf4_linear(xt, w4, at::Tensor()); }),
               median_us([&] { at::linear(xt, wd); }));
    fmt::print("{:<34} {:>10.1f} {:>10.1f}\n", fmt::format("nf4 dequant+linear W[{}x{}]", out, in),
               median_us([&] { at::linear(xt, sllm::ops::nf4_dequantize(w4, at::kFloat)); }),
               median_us([&] { at::linear(xt, sllm::ops::ref::nf4_dequantize(w4, at::kFloat)); }));
    // The same over 30 distinct weights in turn (one per layer of the default model), so the
    // dense weights no longer sit in cache between calls as they do above.
    std::vector<at::Tensor> dense(30);
    std::vector<sllm::ops::Nf4Tensors> packed(30);
    for (size_t l = 0; l < dense.size(); ++l) {
      dense[l] = at::randn({out, in}) * 0.05;
      packed[l] = w4;
      packed[l].packed = w4.packed.clone();
      packed[l].absmax = w4.absmax.clone();
    }
    size_t li = 0, di = 0;
    fmt::print("{:<34} {:>10.1f} {:>10.1f}\n", fmt::format("  x30 layers W[{}x{}]", out, in),
               median_us([&] { sllm::ops::nf4_linear(xt, packed[li++ % 30], at::Tensor()); }),
               median_us([&] { at::linear(xt, dense[di++ % 30]); }));
  }
  // Batched decode (the engine's up to 16 sequences, one token each; more rows: short prefill
  // chunks) through a 4-bit weight, each case over 30 distinct weights in turn: dense fp32
  // at::linear, NF4 dequantize + at::linear, the fused multi-row kernel (nf4_gemm_small_f32 split
  // over threads as the op does) and what nf4_linear picks for that many rows. The crossover rows
  // of the fused kernel vs dequant+linear set the op's threshold (kCpuGemmSmallMaxRows in
  // src/ops/nf4.cpp).
  fmt::print(
      "\nbatched decode, 30 weights in turn (us per call)\n{:<24} {:>10} {:>10} {:>10} {:>10}\n",
      "rows x W[out x in]", "dense f32", "dq+linear", "nf4 gemm", "nf4_linear");
  for (auto [out, in] : {std::pair<int64_t, int64_t>{576, 576}, {576, 1536}, {1536, 576}}) {
    std::vector<at::Tensor> dense(30);
    std::vector<sllm::ops::Nf4Tensors> packed(30);
    for (size_t l = 0; l < dense.size(); ++l) {
      dense[l] = (at::randn({out, in}) * 0.05).contiguous();
      auto q = sllm::quant::quantize_nf4(dense[l].data_ptr<float>(), {out, in});
      const auto absmax = sllm::quant::dequantized_absmax(q);
      packed[l] = sllm::ops::make_nf4_tensors(
          q.weight.data(), absmax.data(),
          sllm::kernels::cpu::quant4_code(sllm::kernels::cpu::Quant4Type::kNf4), out, in, 64);
    }
    for (int64_t rows : {1, 2, 4, 8, 16, 24, 32, 48, 64}) {
      auto xt = at::randn({rows, in});
      auto y = at::empty({rows, out});
      size_t l0 = 0, l1 = 0, l2 = 0, l3 = 0;
      const double td = median_us([&] { at::linear(xt, dense[l0++ % 30]); });
      const double tq = median_us(
          [&] { at::linear(xt, sllm::ops::nf4_dequantize(packed[l1++ % 30], at::kFloat)); });
      const double tg = median_us([&] {
        const auto& w = packed[l2++ % 30];
        const int64_t grain = std::max<int64_t>(2, 16384 / in);
        at::parallel_for(0, out, grain, [&](int64_t o0, int64_t o1) {
          sllm::kernels::cpu::nf4_gemm_small_f32(
              w.packed.data_ptr<uint8_t>(), w.absmax.data_ptr<float>(), w.code.data_ptr<float>(),
              64, out, in, rows, xt.data_ptr<float>(), nullptr, y.data_ptr<float>(), o0, o1);
        });
      });
      const double to =
          median_us([&] { sllm::ops::nf4_linear(xt, packed[l3++ % 30], at::Tensor()); });
      fmt::print("{:<24} {:>10.1f} {:>10.1f} {:>10.1f} {:>10.1f}\n",
                 fmt::format("{:>2} x W[{}x{}]", rows, out, in), td, tq, tg, to);
    }
  }
  if (section == "all") bench_intq();
  return 0;
}
