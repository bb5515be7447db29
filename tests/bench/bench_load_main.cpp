// sllm_bench_load key=value...: the server load mode without the sllm binary, e.g.
//   sllm_bench_load load.url=http://127.0.0.1:8080 load.concurrency=1,4,16 markdown=true
#include <cstdio>
#include <vector>

#include "apps/bench_load.h"
#include "core/config.h"
#include "core/log.h"

int main(int argc, char** argv) {
  using namespace sllm;
  try {
    log::init();
    const auto table = options::join({apps::bench_load_options(), apps::bench_output_options()});
    std::vector<std::string> overrides(argv + 1, argv + argc);
    if (!overrides.empty() && (overrides[0] == "-h" || overrides[0] == "--help")) {
      std::fputs(options::to_yaml(table, options::defaults(table),
                                  "sllm_bench_load key=value ...: the keys below")
                     .c_str(),
                 stdout);
      return 0;
    }
    const auto cfg =
        config::resolve(options::defaults(table), config::standard_layers("", overrides, {}, ""));
    return apps::run_bench_load(cfg);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
