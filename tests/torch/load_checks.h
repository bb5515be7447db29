// Checks shared by the checkpoint layout tests (bitsandbytes, GPTQ/AWQ/int8, the int8 head).
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "load/loader.h"

namespace sllm::fixtures {

// load_model throws sllm::Error whose message contains every one of `parts`.
inline void expect_load_error(const std::string& dir, const std::vector<std::string>& parts) {
  try {
    load::load_model(dir);
    ADD_FAILURE() << "loading " << dir << " did not fail";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "'" << p << "' not in: " << e.what();
  }
}

}  // namespace sllm::fixtures
