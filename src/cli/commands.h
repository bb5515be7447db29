// The subcommand table: name, help, the command's options (keys, defaults, help, flags) and the
// app that runs a resolved config.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "core/options.h"

namespace sllm::cli {

struct Command {
  std::string name, help;
  options::Table (*options)();
  int (*run)(const nlohmann::json&);
};

const std::vector<Command>& commands();

}  // namespace sllm::cli
