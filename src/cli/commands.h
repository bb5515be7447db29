// The subcommand table: name, help, the flags that map onto config keys, and the app.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace sllm::cli {

struct Flag {
  std::string names;  // CLI11 spelling, e.g. "-m,--model"
  std::string key;    // dotted config key it sets
  std::string help;
};

struct Command {
  std::string name, help;
  nlohmann::json (*defaults)();
  int (*run)(const nlohmann::json&);
  std::vector<Flag> flags;
};

const std::vector<Command>& commands();

}  // namespace sllm::cli
