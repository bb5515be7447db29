// sllm: one binary, one subcommand per job. Flags and config files resolve into one
// config tree per command (defaults <- --config file <- key=value overrides <- flags).
#include <c10/util/Exception.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/options.h"
#include "sllm/model.h"

namespace {

using nlohmann::json;

// Where a flag's value goes: typed by the option's default.
void add_flag(CLI::App* sub, const sllm::options::Option& o, json& flags) {
  const auto ptr = json::json_pointer("/" + [&] {
    std::string p = o.key;
    std::replace(p.begin(), p.end(), '.', '/');
    return p;
  }());
  const json& def = o.def;
  const std::string help = o.help + (def.is_null() ? "" : " [default: " + def.dump() + "]");
  if (def.is_boolean()) {
    sub->add_flag_function(
        o.flag, [&flags, ptr](int64_t n) { flags[ptr] = n > 0; }, help);
  } else if (def.is_array()) {
    sub->add_option_function<std::vector<std::string>>(
        o.flag, [&flags, ptr](const std::vector<std::string>& v) { flags[ptr] = v; }, help);
  } else if (def.is_string() || def.is_null()) {
    // Text flags stay text as typed ("--prompt 007" is not the number 7).
    sub->add_option_function<std::string>(
        o.flag, [&flags, ptr](const std::string& v) { flags[ptr] = v; }, help);
  } else {
    // Numbers are typed like file values; config::resolve checks them against the default.
    sub->add_option_function<std::string>(
           o.flag,
           [&flags, ptr](const std::string& v) { flags[ptr] = sllm::config::parse_scalar(v); },
           help)
        ->type_name(def.is_number_integer() ? "INT"
                    : def.is_number()       ? "FLOAT"
                                            : "VALUE");
  }
}

std::string print_header(const std::string& command) {
  return "sllm " + command +
         ": every config key with its value, what it does and [the flag that sets it].\n"
         "Printed by `sllm " +
         command +
         " --print-config` (after --config, key=value overrides and flags);\n"
         "read back with --config FILE. Precedence: defaults < file < overrides < flags.";
}

}  // namespace

int main(int argc, char** argv) {
  sllm::log::init();
  CLI::App app{"sllm: small language models on your own machine"};
  app.require_subcommand(1);
  app.fallthrough();  // --log-level works before or after the subcommand
  app.set_version_flag("--version", "sllm " + sllm::version());
  std::string log_level;
  app.add_option("--log-level", log_level,
                 "trace, debug, info, warn, error, off (env SLLM_LOG_LEVEL)");

  struct Parsed {
    CLI::App* sub;
    sllm::options::Table table;
    json defaults, flags = json::object();
    std::string config_file;
    std::vector<std::string> overrides;
    bool print_config = false;
  };
  std::vector<Parsed> parsed;
  parsed.reserve(sllm::cli::commands().size());
  try {
    for (const auto& c : sllm::cli::commands()) {
      auto& p = parsed.emplace_back();
      p.sub = app.add_subcommand(c.name, c.help);
      p.table = c.options();
      p.defaults = sllm::options::defaults(p.table);
      p.sub->add_option("-c,--config", p.config_file, "YAML or JSON config file");
      p.sub->add_option("overrides", p.overrides,
                        "dotted overrides, e.g. sampling.temperature=0.2");
      p.sub->add_flag("--print-config", p.print_config,
                      "print the resolved config as commented YAML (every key) and exit");
      for (const auto& o : p.table)
        if (!o.flag.empty()) add_flag(p.sub, o, p.flags);
    }
  } catch (const sllm::Error& e) {  // an option table that contradicts itself
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (!log_level.empty()) sllm::log::set_level(sllm::log::parse_level(log_level));
    for (size_t i = 0; i < parsed.size(); ++i) {
      auto& p = parsed[i];
      if (!p.sub->parsed()) continue;
      const json cfg = sllm::config::resolve(
          p.defaults,
          sllm::config::standard_layers(p.config_file, p.overrides, p.flags, "command line"));
      const auto& cmd = sllm::cli::commands()[i];
      if (p.print_config) {
        std::cout << sllm::options::to_yaml(p.table, cfg, print_header(cmd.name));
        return 0;
      }
      return cmd.run(cfg);
    }
  } catch (const sllm::Error& e) {
    sllm::log::debug("raised at {}", e.where());
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
