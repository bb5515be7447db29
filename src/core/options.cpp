#include "core/options.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/error.h"

namespace sllm::options {
namespace {

using nlohmann::json;

std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string::npos ? dot : dot - start));
    SLLM_CHECK(!parts.back().empty(), "option key '{}' has an empty part", key);
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

// Options nested by key, sections in the order their first option appears.
struct Node {
  std::string name;
  const Option* option = nullptr;  // set on leaves
  std::vector<Node> children;
};

Node tree_of(const Table& table) {
  Node root;
  for (const auto& o : table) {
    Node* cur = &root;
    for (const auto& part : split_key(o.key)) {
      auto it = std::find_if(cur->children.begin(), cur->children.end(),
                             [&](const Node& n) { return n.name == part; });
      cur = it != cur->children.end() ? &*it : &cur->children.emplace_back(Node{part, nullptr, {}});
    }
    cur->option = &o;
  }
  return root;
}

// A string YAML reads back as the same string without quotes: a plain word or path.
bool bare_string(const std::string& s) {
  if (s.empty() || !(std::isalnum(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (const unsigned char c : s)
    if (!std::isalnum(c) && c != '_' && c != '.' && c != '/' && c != '-' && c != '+') return false;
  const json back = config::parse_scalar(s);
  return back.is_string() && back.get_ref<const std::string&>() == s;
}

std::string flag_note(const std::string& flag) {
  std::string names;
  size_t start = 0;
  while (true) {
    const size_t comma = flag.find(',', start);
    names += (names.empty() ? "" : ", ") +
             flag.substr(start, comma == std::string::npos ? comma : comma - start);
    if (comma == std::string::npos) return " [" + names + "]";
    start = comma + 1;
  }
}

void emit(const Node& node, const json* value, size_t depth, std::string& out) {
  const std::string pad(2 * depth, ' ');
  if (node.option) {
    const Option& o = *node.option;
    out += fmt::format("{}# {}{}\n", pad, o.help, o.flag.empty() ? "" : flag_note(o.flag));
    out += fmt::format("{}{}: {}\n", pad, node.name, yaml_value(value ? *value : o.def));
    return;
  }
  if (value && value->is_null()) {  // a section turned off
    out += fmt::format("{}{}: null\n", pad, node.name);
    return;
  }
  out += fmt::format("{}{}:\n", pad, node.name);
  for (const auto& child : node.children) {
    const json* v = value && value->is_object() && value->contains(child.name)
                        ? &(*value)[child.name]
                        : nullptr;
    emit(child, v, depth + 1, out);
  }
}

}  // namespace

Table join(std::initializer_list<Table> tables) {
  Table out;
  for (const auto& t : tables) out.insert(out.end(), t.begin(), t.end());
  return out;
}

json defaults(const Table& table) {
  json d = json::object();
  for (const auto& o : table) {
    SLLM_CHECK(!o.help.empty() && o.help.find('\n') == std::string::npos,
               "option '{}' needs a one-line help text", o.key);
    const auto parts = split_key(o.key);
    json* cur = &d;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      json& next = (*cur)[parts[i]];
      if (next.is_null()) next = json::object();
      SLLM_CHECK(next.is_object(), "option '{}' is inside '{}', which is a value", o.key, parts[i]);
      cur = &next;
    }
    SLLM_CHECK(!cur->contains(parts.back()), "option '{}' is declared twice (or is a section)",
               o.key);
    (*cur)[parts.back()] = o.def;
  }
  return d;
}

std::string yaml_value(const json& v) {
  switch (v.type()) {
    case json::value_t::string: {
      const auto& s = v.get_ref<const std::string&>();
      return bare_string(s) ? s : v.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    case json::value_t::number_float: {
      const double d = v.get<double>();
      if (std::isnan(d)) return ".nan";
      if (std::isinf(d)) return d < 0 ? "-.inf" : ".inf";
      return v.dump();
    }
    case json::value_t::array: {
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + yaml_value(v[i]);
      return s + "]";
    }
    case json::value_t::object: {
      std::string s = "{";
      for (const auto& [k, sub] : v.items())
        s += (s.size() > 1 ? ", " : "") + yaml_value(json(k)) + ": " + yaml_value(sub);
      return s + "}";
    }
    default:
      return v.dump();  // null, booleans, integers
  }
}

std::string to_yaml(const Table& table, const json& cfg, const std::string& header) {
  (void)defaults(table);  // the same checks as the defaults tree
  std::string out;
  size_t start = 0;
  while (start < header.size()) {
    size_t nl = header.find('\n', start);
    if (nl == std::string::npos) nl = header.size();
    const std::string line = header.substr(start, nl - start);
    out += line.empty() ? "#\n" : "# " + line + "\n";
    start = nl + 1;
  }
  std::string body;
  const Node root = tree_of(table);
  bool after_section = false;
  for (const auto& child : root.children) {
    // Top-level sections stand apart: a blank line before and after each.
    const bool section = child.option == nullptr;
    if (!body.empty() && (section || after_section)) body += "\n";
    after_section = section;
    const json* v = cfg.is_object() && cfg.contains(child.name) ? &cfg[child.name] : nullptr;
    emit(child, v, 0, body);
  }
  return out + (out.empty() ? "" : "\n") + body;
}

}  // namespace sllm::options
