// sllm_bench_html RESULT.json REPORT.html: the HTML report of a saved bench result (offline or
// load), without the sllm binary.
#include <cstdio>

#include "apps/bench_html.h"
#include "io/atomic_write.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s RESULT.json REPORT.html\n", argv[0]);
    return 2;
  }
  try {
    const auto text = sllm::io::read_file(argv[1]);
    const auto result = nlohmann::json::parse(text, nullptr, false);
    if (result.is_discarded()) {
      std::fprintf(stderr, "error: %s is not valid JSON\n", argv[1]);
      return 1;
    }
    sllm::io::write_file_atomic(argv[2], sllm::apps::render_bench_html(result));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
