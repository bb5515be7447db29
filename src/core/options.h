// Options declared once. A table lists every option of a command: its dotted key, its default
// (whose JSON type is the option's type, as config.h reads it: null = optional string, [] = list
// of anything, {} = mapping of anything), its help and, when it has one, its command-line flag.
// From a table come the defaults tree config::resolve validates against, the CLI flags with their
// help, the commented reference YAML, and (through a Group) the struct the option fills.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"

namespace sllm::options {

struct Option {
  Option(std::string key, nlohmann::json def, std::string help, std::string flag = {})
      : key(std::move(key)), def(std::move(def)), help(std::move(help)), flag(std::move(flag)) {}

  std::string key;     // dotted config key, e.g. "sampling.top_k"
  nlohmann::json def;  // default value; its type is the option's type
  std::string help;    // one line; shown by --help and in the reference YAML
  std::string flag;    // CLI11 spelling, e.g. "-n,--max-new-tokens"; "" = config file only
};

using Table = std::vector<Option>;

// Concatenates tables in order (flags and YAML keep that order).
Table join(std::initializer_list<Table> tables);

// The defaults tree of a table. Throws sllm::Error for a key given twice, a key that is both a
// value and a section, an empty key or key part, or an option without help.
nlohmann::json defaults(const Table& table);

// A value as a YAML flow scalar or collection that config::load_file reads back as the same
// JSON: strings bare when that is unambiguous, double-quoted otherwise.
std::string yaml_value(const nlohmann::json& v);

// Commented YAML of every option of the table with its value in cfg (a resolved config; the
// defaults give the reference file): the help (and flag) above each key, sections nested in the
// order their first key appears. A section set to null (e.g. `lora: null`) prints as null.
// header: comment lines written first ("# " is added to each line).
std::string to_yaml(const Table& table, const nlohmann::json& cfg, const std::string& header);

// A struct-backed group: each option also says how it fills S from a resolved config.
template <class S>
class Group {
 public:
  using Fill = std::function<void(S&, const nlohmann::json& cfg, const std::string& key)>;
  struct Entry {
    Option option;
    Fill fill;  // empty: the option is read by the app itself
  };

  Group(std::initializer_list<Entry> entries) : entries_(entries) {}

  // s.*m = config::get<M>(cfg, key): typed, with errors naming the key.
  template <class M>
  static Entry member(Option o, M S::*m) {
    return {std::move(o), [m](S& s, const nlohmann::json& cfg, const std::string& key) {
              s.*m = config::get<M>(cfg, key);
            }};
  }
  // set(s, config::get<T>(cfg, key)): for conversions and fields not named like the key.
  template <class T, class F>
  static Entry with(Option o, F set) {
    return {std::move(o), [set](S& s, const nlohmann::json& cfg, const std::string& key) {
              set(s, config::get<T>(cfg, key));
            }};
  }
  // Declared here, read by the app (no field in S).
  static Entry plain(Option o) { return {std::move(o), {}}; }

  Table table() const {
    Table t;
    for (const auto& e : entries_) t.push_back(e.option);
    return t;
  }

  // S filled from a resolved config, starting from `base`.
  S fill(const nlohmann::json& cfg, S base = {}) const {
    for (const auto& e : entries_)
      if (e.fill) e.fill(base, cfg, e.option.key);
    return base;
  }

 private:
  std::vector<Entry> entries_;
};

}  // namespace sllm::options
