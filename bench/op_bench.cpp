// Op micro-benchmarks at decode shapes of the default model: each sllm op against its
// plain-libtorch reference, medians of repeated runs in one process.
//   build/bench/sllm_op_bench [threads]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "ops/ops.h"

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
}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) at::set_num_threads(std::atoi(argv[1]));
  at::NoGradGuard g;
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
  return 0;
}
