#include "core/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sllm::config {
namespace {

using nlohmann::json;

std::string lower_ext(const std::string& path) {
  const auto dot = path.find_last_of('.');
  const auto slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string e = path.substr(dot + 1);
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
  return e;
}

bool all_of(std::string_view s, int (*pred)(int)) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [pred](unsigned char c) { return pred(c) != 0; });
}
int is_oct(int c) { return c >= '0' && c <= '7'; }
int is_dec(int c) { return c >= '0' && c <= '9'; }
int is_hex(int c) { return is_dec(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool is_core_float(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && is_dec(s[i])) ++i, ++int_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_dec(s[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (!all_of(s.substr(i), is_dec)) return false;
    i = s.size();
  }
  return i == s.size();
}

// YAML 1.2 core schema resolution of a plain (unquoted) scalar.
json plain_scalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  const std::string_view v(s);
  const std::string_view digits = v[0] == '-' || v[0] == '+' ? v.substr(1) : v;
  int base = 0;
  if (all_of(digits, is_dec))
    base = 10;
  else if (v.size() > 2 && v.substr(0, 2) == "0o" && all_of(v.substr(2), is_oct))
    base = 8;
  else if (v.size() > 2 && v.substr(0, 2) == "0x" && all_of(v.substr(2), is_hex))
    base = 16;
  if (base != 0) {
    errno = 0;
    char* end = nullptr;
    const long long i = std::strtoll(s.c_str() + (base == 10 ? 0 : 2), &end, base);
    if (errno == 0 && *end == '\0') return static_cast<int64_t>(i);
    return base == 10 ? json(std::strtod(s.c_str(), nullptr)) : json(s);  // beyond int64
  }
  if (is_core_float(v)) return std::strtod(s.c_str(), nullptr);
  const std::string_view inf = v[0] == '-' || v[0] == '+' ? v.substr(1) : v;
  if (inf == ".inf" || inf == ".Inf" || inf == ".INF")
    return v[0] == '-' ? -std::numeric_limits<double>::infinity()
                       : std::numeric_limits<double>::infinity();
  if (v == ".nan" || v == ".NaN" || v == ".NAN") return std::numeric_limits<double>::quiet_NaN();
  return s;
}

json from_yaml(const YAML::Node& n, const std::string& file) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar: {
      const std::string& tag = n.Tag();
      if (tag == "?") return plain_scalar(n.Scalar());
      if (tag == "!" || tag == "tag:yaml.org,2002:str") return n.Scalar();  // quoted or !!str
      return plain_scalar(n.Scalar());  // other explicit tags: resolve by content
    }
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& e : n) a.push_back(from_yaml(e, file));
      return a;
    }
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : n) {
        const auto m = kv.first.Mark();
        SLLM_CHECK(kv.first.IsScalar(), "{}:{}:{}: mapping keys must be plain words", file,
                   m.line + 1, m.column + 1);
        const std::string key = kv.first.Scalar();
        SLLM_CHECK(!o.contains(key), "{}:{}:{}: duplicate key '{}'", file, m.line + 1, m.column + 1,
                   key);
        o[key] = from_yaml(kv.second, file);
      }
      return o;
    }
  }
  return nullptr;
}

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float:
      return "float";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "list";
    case json::value_t::object:
      return "mapping";
    default:
      return "value";
  }
}

std::string describe(const json& v) {
  std::string d = v.dump();
  if (d.size() > 60) d = d.substr(0, 57) + "...";
  return type_name(v) + " " + d;
}

// Optimal string alignment distance: Levenshtein plus adjacent transpositions ("cxt" -> "ctx").
size_t edit_distance(std::string_view a, std::string_view b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

std::string_view leaf(std::string_view dotted) {
  const auto p = dotted.rfind('.');
  return p == std::string_view::npos ? dotted : dotted.substr(p + 1);
}

void known_keys(const json& defaults, const std::string& prefix, std::vector<std::string>& out) {
  for (const auto& [k, v] : defaults.items()) {
    const std::string key = prefix.empty() ? k : prefix + "." + k;
    out.push_back(key);
    if (v.is_object()) known_keys(v, key, out);
  }
}

// Matches the whole dotted key or only its last word, so a key at the wrong depth
// ("temperature" for "sampling.temperature") is found too.
std::string suggest(const std::string& key, const std::vector<std::string>& known) {
  const std::string_view u = leaf(key);
  const size_t limit = std::clamp<size_t>(u.size() / 3, 1, 3);
  std::string best;
  size_t best_d = limit + 1, best_full = 0;
  for (const auto& k : known) {
    const size_t full = edit_distance(key, k);
    const size_t d = std::min(full, edit_distance(u, leaf(k)));
    if (d < best_d || (d == best_d && full < best_full)) best = k, best_d = d, best_full = full;
  }
  return best_d <= limit ? best : "";
}

// "a.b": 1 inside a layer means a: {b: 1}; later spellings of the same key win.
json expand_dotted(const json& v) {
  if (!v.is_object()) return v;
  json out = json::object();
  for (const auto& [k, sub] : v.items()) {
    json* dst = &out;
    size_t start = 0;
    for (size_t dot; (dot = k.find('.', start)) != std::string::npos; start = dot + 1) {
      json& next = (*dst)[k.substr(start, dot - start)];
      if (!next.is_object()) next = json::object();
      dst = &next;
    }
    json& slot = (*dst)[k.substr(start)];
    json e = expand_dotted(sub);
    deep_merge(slot, e);
  }
  return out;
}

struct Validator {
  const std::string& source;
  const std::vector<std::string>& known;
  std::vector<std::string>& errors;

  void error(const std::string& key, const std::string& expected, const json& v) {
    errors.push_back(
        fmt::format("{}: key '{}' must be {}, got {}", source, key, expected, describe(v)));
  }

  // Checks v against the schema def; writes the (coerced) value into out. False on error.
  bool value(const json& def, const json& v, const std::string& key, json& out) {
    if (def.is_object()) {
      if (v.is_null() && !def.empty()) return out = v, true;  // an optional section turned off
      if (!v.is_object()) return error(key, "a mapping", v), false;
      if (!out.is_object()) out = json::object();
      if (def.empty()) {  // mapping of anything
        deep_merge(out, v);
        return true;
      }
      bool ok = true;
      for (const auto& [k, sub] : v.items()) {
        const std::string child = key.empty() ? k : key + "." + k;
        if (!def.contains(k)) {
          const std::string s = suggest(child, known);
          errors.push_back(s.empty() ? fmt::format("{}: unknown key '{}'", source, child)
                                     : fmt::format("{}: unknown key '{}' (did you mean '{}'?)",
                                                   source, child, s));
          ok = false;
          continue;
        }
        json tmp = out.contains(k) ? out[k] : json();
        if (value(def[k], sub, child, tmp))
          out[k] = std::move(tmp);
        else
          ok = false;
      }
      return ok;
    }
    if (def.is_null() || def.is_string()) {
      if (v.is_string() || (def.is_null() && v.is_null())) return out = v, true;
      if (v.is_boolean() || v.is_number()) return out = v.dump(), true;  // `name: 123` means "123"
      return error(key, def.is_null() ? "a string (or null)" : "a string", v), false;
    }
    if (def.is_boolean()) {
      if (!v.is_boolean()) return error(key, "a boolean (true or false)", v), false;
      return out = v, true;
    }
    if (def.is_number_unsigned()) {
      if (v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0))
        return out = v, true;
      return error(key, "a non-negative integer", v), false;
    }
    if (def.is_number_integer()) {
      if (v.is_number_unsigned() &&
          v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
        return error(key, "an integer in range", v), false;
      if (!v.is_number_integer()) return error(key, "an integer", v), false;
      return out = v, true;
    }
    if (def.is_number_float()) {
      if (!v.is_number()) return error(key, "a number", v), false;
      return out = v.get<double>(), true;
    }
    if (def.is_array()) {
      if (!v.is_array()) return error(key, "a list", v), false;
      if (def.empty()) return out = v, true;  // list of anything
      json arr = json::array();
      bool ok = true;
      for (size_t i = 0; i < v.size(); ++i) {
        json e;
        ok &= value(def[0], v[i], fmt::format("{}[{}]", key, i), e);
        arr.push_back(std::move(e));
      }
      if (ok) out = std::move(arr);
      return ok;
    }
    return out = v, true;
  }
};

void flatten_into(const json& v, const std::string& key,
                  std::vector<std::pair<std::string, std::string>>& out) {
  if (v.is_object() && (!v.empty() || key.empty())) {
    for (const auto& [k, sub] : v.items()) flatten_into(sub, key.empty() ? k : key + "." + k, out);
    return;
  }
  std::string text;
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    bool bare = false;
    try {
      const json back = parse_scalar(s);
      bare = back.is_string() && back.get_ref<const std::string&>() == s &&
             s.find('\n') == std::string::npos;
    } catch (const Error&) {
    }
    text = bare ? s : v.dump();
  } else {
    text = v.dump();
  }
  out.emplace_back(key, std::move(text));
}

}  // namespace

void deep_merge(json& dst, const json& src) {
  if (!dst.is_object() || !src.is_object()) {
    dst = src;
    return;
  }
  for (const auto& [k, v] : src.items()) deep_merge(dst[k], v);
}

json load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SLLM_CHECK(in, "cannot open config file '{}': {}", path, std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (lower_ext(path) == "json") {
    try {
      return json::parse(text, nullptr, true, /*ignore_comments=*/true);
    } catch (const json::parse_error& e) {
      // Report line:column of the byte nlohmann stopped at, and its reason without the prefix.
      size_t line = 1, col = 1;
      for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
        if (text[i] == '\n')
          line++, col = 1;
        else
          col++;
      }
      std::string why = e.what();
      if (auto p = why.find(": ", why.find("parse error")); p != std::string::npos)
        why = why.substr(p + 2);
      SLLM_FAIL("{}:{}:{}: JSON syntax error: {}", path, line, col, why);
    }
  }
  try {
    json j = from_yaml(YAML::Load(text), path);
    return j.is_null() ? json::object() : j;
  } catch (const YAML::Exception& e) {
    SLLM_FAIL("{}:{}:{}: YAML syntax error: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
}

json parse_scalar(std::string_view text) {
  // Typed on the trimmed text, but plain text keeps its spaces (" a " stays " a ").
  std::string_view t = text;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  const std::string s(t);
  const char c = s.empty() ? '\0' : s.front();
  const bool flow = c == '[' || c == '{';
  const bool quoted = s.size() >= 2 && (c == '"' || c == '\'') && s.back() == c;
  if (flow || quoted) {
    try {
      return from_yaml(YAML::Load(s), "value");
    } catch (const YAML::Exception& e) {
      if (flow)
        SLLM_FAIL("cannot read '{}' as a YAML {}: {}", s, c == '[' ? "list" : "mapping", e.msg);
      // a quoted-looking string that is not valid YAML ("'a'b'") stays text
    }
  }
  json v = plain_scalar(s);
  if (v.is_string() && s.size() != text.size()) return std::string(text);
  return v;
}

void apply_override(json& cfg, std::string_view assignment) {
  const auto eq = assignment.find('=');
  SLLM_CHECK(eq != std::string_view::npos,
             "malformed override '{}': expected key=value, e.g. sampling.temperature=0.2",
             assignment);
  std::string_view key = assignment.substr(0, eq);
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.front())))
    key.remove_prefix(1);
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.remove_suffix(1);
  SLLM_CHECK(!key.empty(), "malformed override '{}': the key before '=' is empty", assignment);
  if (!cfg.is_object()) cfg = json::object();
  json* dst = &cfg;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    const std::string part(key.substr(start, dot == std::string_view::npos ? dot : dot - start));
    SLLM_CHECK(!part.empty(), "malformed override '{}': empty part in key '{}'", assignment, key);
    if (dot == std::string_view::npos) {
      (*dst)[part] = parse_scalar(assignment.substr(eq + 1));
      return;
    }
    json& next = (*dst)[part];
    if (!next.is_object()) next = json::object();
    dst = &next;
    start = dot + 1;
  }
}

std::vector<Layer> standard_layers(const std::string& config_file,
                                   const std::vector<std::string>& overrides, const json& last,
                                   const std::string& last_source) {
  std::vector<Layer> layers;
  if (!config_file.empty()) layers.push_back({config_file, load_file(config_file)});
  json over = json::object();
  for (const auto& o : overrides) apply_override(over, o);
  if (!over.empty()) layers.push_back({"override", over});
  if (!last.empty()) layers.push_back({last_source, last});
  return layers;
}

json resolve(const json& defaults, const std::vector<Layer>& layers) {
  SLLM_CHECK(defaults.is_object(), "config defaults must be a mapping");
  std::vector<std::string> known;
  known_keys(defaults, "", known);
  std::vector<std::string> errors;
  json cfg = defaults;
  for (const auto& layer : layers) {
    if (layer.values.is_null()) continue;
    if (!layer.values.is_object()) {
      errors.push_back(fmt::format("{}: the top level must be a mapping of keys, got {}",
                                   layer.source, describe(layer.values)));
      continue;
    }
    Validator v{layer.source, known, errors};
    // Each key is validated and merged on its own, so one bad key does not drop the rest.
    v.value(defaults, expand_dotted(layer.values), "", cfg);
  }
  if (errors.size() == 1) throw Error(errors[0]);
  if (!errors.empty()) {
    std::string msg = fmt::format("{} problems in the configuration:", errors.size());
    for (const auto& e : errors) msg += "\n  " + e;
    throw Error(msg);
  }
  return cfg;
}

std::vector<std::string> flatten(const json& cfg) {
  std::vector<std::pair<std::string, std::string>> kv;
  flatten_into(cfg, "", kv);
  std::sort(kv.begin(), kv.end());
  std::vector<std::string> lines;
  lines.reserve(kv.size());
  for (auto& [k, v] : kv) lines.push_back(k + "=" + v);
  return lines;
}

namespace detail {

const json& lookup(const json& cfg, std::string_view dotted_key) {
  const json* cur = &cfg;
  size_t start = 0;
  while (true) {
    const size_t dot = dotted_key.find('.', start);
    const std::string part(
        dotted_key.substr(start, dot == std::string_view::npos ? dot : dot - start));
    SLLM_CHECK(cur->is_object() && cur->contains(part), "config key '{}' is missing", dotted_key);
    cur = &(*cur)[part];
    if (dot == std::string_view::npos) return *cur;
    start = dot + 1;
  }
}

void type_error(std::string_view key, std::string_view expected, const json& v) {
  SLLM_FAIL("config key '{}' must be {}, got {}", key, expected, describe(v));
}

}  // namespace detail
}  // namespace sllm::config
