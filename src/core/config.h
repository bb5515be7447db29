// Configs for every subcommand. The schema of a command IS its default value tree:
// every known key is present in the defaults and its type is the type of its default
// (null = optional string, empty array = list of anything, empty object = mapping of anything).
// Layers (config file, key=value overrides, flags) merge onto the defaults in order.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace sllm::config {

// Reads a .yaml/.yml/.json file (any other extension is read as YAML). YAML scalars are
// typed like the YAML 1.2 core schema; quoted scalars stay strings. An empty file is {}.
// Errors name the file, and line:column for syntax errors.
nlohmann::json load_file(const std::string& path);

// Types a command-line string like a YAML plain scalar: "0.2" -> 0.2, "true" -> true,
// "~" -> null, "[1,2]" / "{a: 1}" -> flow collections, "'7'" -> "7", else the text itself
// (no comment stripping: "a # b" stays "a # b"). Throws on a malformed [..] / {..}.
nlohmann::json parse_scalar(std::string_view text);

// Applies "a.b.c=value" onto cfg, creating objects as needed; value typed by parse_scalar.
// Throws sllm::Error for a missing '=' or an empty key / key segment.
void apply_override(nlohmann::json& cfg, std::string_view assignment);

// Merges src into dst: mappings key by key, recursively; anything else (a list, a scalar, null)
// replaces what dst holds there. A null in src is a value (an optional key), not a deletion.
void deep_merge(nlohmann::json& dst, const nlohmann::json& src);

struct Layer {
  std::string source;     // "configs/x.yaml", "override", "command line": named in errors
  nlohmann::json values;  // a mapping; keys may also be dotted ("sampling.top_k": 5)
};

// defaults <- layers, deep-merging mappings (lists and scalars are replaced). Every layer is
// validated against the defaults; all problems of all layers are thrown as one sllm::Error,
// one per line, each naming the source and the dotted key. Coercions: integer -> float where
// a float is expected; a boolean or number -> its text where a string is expected (so
// `name: 123` or a flag `--prompt 42` work). A float is never accepted as an integer.
nlohmann::json resolve(const nlohmann::json& defaults, const std::vector<Layer>& layers);

// The layers every command resolves, in order: the config file (if any), the key=value
// overrides (if any), then `last` (e.g. the command-line flags) named `last_source`, if not empty.
std::vector<Layer> standard_layers(const std::string& config_file,
                                   const std::vector<std::string>& overrides,
                                   const nlohmann::json& last, const std::string& last_source);

// Flattens to "a.b=value" lines sorted by key. Strings are bare when parse_scalar reads
// them back as the same string, JSON-quoted otherwise; so every line is a valid override.
std::vector<std::string> flatten(const nlohmann::json& cfg);

namespace detail {
const nlohmann::json& lookup(const nlohmann::json& cfg, std::string_view dotted_key);
[[noreturn]] void type_error(std::string_view key, std::string_view expected,
                             const nlohmann::json& v);
}  // namespace detail

// Typed access with an error naming the key: get<double>(cfg, "sampling.temperature").
// bool, integers (range-checked), floating point (integers accepted), std::string, json,
// or anything nlohmann can convert to (e.g. std::vector<std::string>).
template <class T>
T get(const nlohmann::json& cfg, std::string_view dotted_key) {
  const nlohmann::json& v = detail::lookup(cfg, dotted_key);
  if constexpr (std::is_same_v<T, nlohmann::json>) {
    return v;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) detail::type_error(dotted_key, "a boolean", v);
    return v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (v.is_number_unsigned()) {
      const auto u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
        detail::type_error(dotted_key, "an integer in range", v);
      return static_cast<T>(u);
    }
    if (!v.is_number_integer()) detail::type_error(dotted_key, "an integer", v);
    const auto i = v.get<int64_t>();
    if constexpr (std::is_signed_v<T>) {
      if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          i > static_cast<int64_t>(std::numeric_limits<T>::max()))
        detail::type_error(dotted_key, "an integer in range", v);
    } else {
      if (i < 0 || static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max()))
        detail::type_error(dotted_key, "a non-negative integer in range", v);
    }
    return static_cast<T>(i);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) detail::type_error(dotted_key, "a number", v);
    return v.get<T>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (v.is_null()) SLLM_FAIL("config key '{}' is not set", dotted_key);
    if (!v.is_string()) detail::type_error(dotted_key, "a string", v);
    return v.get<std::string>();
  } else {
    try {
      return v.get<T>();
    } catch (const nlohmann::json::exception&) {
      detail::type_error(dotted_key, "of another type", v);
    }
  }
}

}  // namespace sllm::config
