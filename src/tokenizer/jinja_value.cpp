// Python's semantics for template values: str(), json.dumps, ==, truthiness, len, indexing and
// slicing by character.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "tokenizer/jinja_builtins.h"
#include "tokenizer/pretokenize.h"

namespace sllm::tok::jinja {

namespace {

// Python's str.isspace (what .strip() and jinja's trim remove): White_Space plus \x1c-\x1f.
bool is_py_space(uint32_t cp) { return is_unicode_space(cp) || (cp >= 0x1C && cp <= 0x1F); }

// Byte offsets of each character of a UTF-8 string, plus the end (invalid bytes count as one).
std::vector<size_t> char_offsets(std::string_view s) {
  std::vector<size_t> off;
  for (size_t i = 0; i < s.size();) {
    off.push_back(i);
    int l = utf8_char_len(s, i);
    i += l > 0 ? l : 1;
  }
  off.push_back(s.size());
  return off;
}

std::string py_repr_str(const std::string& s) {
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\' || c == static_cast<unsigned char>(q)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + q;
}

std::string py_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  return Value(d).dump();  // shortest round-trip digits, "1.0" for integral values, like repr
}

std::string py_repr(const Value& v) {
  if (v.is_string()) return py_repr_str(v.get<std::string>());
  if (v.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + py_repr(v[i]);
    return out + "]";
  }
  if (v.is_object()) {
    std::string out = "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it, first = false)
      out += (first ? "" : ", ") + py_repr_str(it.key()) + ": " + py_repr(it.value());
    return out + "}";
  }
  return to_py_str(v);
}

void json_str(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20)
          out += fmt::format("\\u{:04x}", c);
        else
          out += static_cast<char>(c);
    }
  }
  out += '"';
}

void json_dump(std::string& out, const Value& v, int indent, bool sort_keys, int level) {
  const std::string nl = indent >= 0 ? "\n" + std::string((level + 1) * indent, ' ') : "";
  const std::string nl_end = indent >= 0 ? "\n" + std::string(level * indent, ' ') : "";
  const char* sep = indent >= 0 ? "," : ", ";
  if (v.is_discarded()) SLLM_FAIL("chat template: tojson of an undefined value");
  if (v.is_string()) {
    json_str(out, v.get<std::string>());
  } else if (v.is_number_float()) {
    double d = v.get<double>();
    out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : py_float(d);
  } else if (v.is_array()) {
    if (v.empty()) {
      out += "[]";
      return;
    }
    out += "[";
    for (size_t i = 0; i < v.size(); ++i) {
      out += (i ? sep : "") + nl;
      json_dump(out, v[i], indent, sort_keys, level + 1);
    }
    out += nl_end + "]";
  } else if (v.is_object()) {
    if (v.empty()) {
      out += "{}";
      return;
    }
    std::vector<std::string> keys;
    for (auto it = v.begin(); it != v.end(); ++it) keys.push_back(it.key());
    if (sort_keys) std::sort(keys.begin(), keys.end());
    out += "{";
    for (size_t i = 0; i < keys.size(); ++i) {
      out += (i ? sep : "") + nl;
      json_str(out, keys[i]);
      out += ": ";
      json_dump(out, v.at(keys[i]), indent, sort_keys, level + 1);
    }
    out += nl_end + "}";
  } else {
    out += v.dump();  // null, true/false, integers
  }
}

int64_t norm_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

}  // namespace

std::string to_py_str(const Value& v) {
  if (v.is_discarded()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "None";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_number_float()) return py_float(v.get<double>());
  if (v.is_number()) return v.dump();
  return py_repr(v);
}

std::string to_py_json(const Value& v, int indent, bool sort_keys) {
  std::string out;
  json_dump(out, v, indent, sort_keys, 0);
  return out;
}

bool truthy(const Value& v) {
  if (v.is_discarded() || v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();  // json::empty() is false
  if (v.is_array() || v.is_object()) return !v.empty();
  return true;
}

bool py_eq(const Value& a, const Value& b) {
  if (a.is_discarded() || b.is_discarded()) return a.is_discarded() && b.is_discarded();
  if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
  if (a.is_array() && b.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!py_eq(a[i], b[i])) return false;
    return true;
  }
  if (a.is_object() && b.is_object()) {  // key order does not matter, as in Python
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(); it != a.end(); ++it) {
      auto f = b.find(it.key());
      if (f == b.end() || !py_eq(it.value(), *f)) return false;
    }
    return true;
  }
  return a == b;
}

std::string py_strip(std::string_view s, std::string_view chars, bool left, bool right) {
  auto strip_cp = [&](size_t at, int len) {
    if (chars.empty()) return is_py_space(utf8_decode(s, at, len));
    return chars.find(s.substr(at, len)) != std::string_view::npos;
  };
  size_t b = 0, e = s.size();
  while (left && b < e) {
    int l = utf8_char_len(s, b);
    if (l == 0 || !strip_cp(b, l)) break;
    b += l;
  }
  while (right && e > b) {
    size_t p = e - 1;
    while (p > b && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
    int l = utf8_char_len(s, p);
    if (l == 0 || p + l != e || !strip_cp(p, l)) break;
    e = p;
  }
  return std::string(s.substr(b, e - b));
}

std::string type_name(const Value& v) {
  if (v.is_discarded()) return "undefined";
  if (v.is_null()) return "NoneType";
  if (v.is_boolean()) return "bool";
  if (v.is_number_float()) return "float";
  if (v.is_number()) return "int";
  if (v.is_string()) return "str";
  if (v.is_array()) return "list";
  return "dict";
}

int64_t py_len(const Value& v) {
  if (v.is_string()) return static_cast<int64_t>(char_offsets(v.get<std::string>()).size()) - 1;
  if (v.is_array() || v.is_object()) return static_cast<int64_t>(v.size());
  return -1;
}

Value py_getitem(const Value& v, const Value& index) {
  if (v.is_object()) {
    if (!index.is_string()) return undefined();
    auto it = v.find(index.get<std::string>());
    return it == v.end() ? undefined() : *it;
  }
  if (!index.is_number_integer() || !(v.is_array() || v.is_string())) return undefined();
  const int64_t n = py_len(v);
  const int64_t i = norm_index(index.get<int64_t>(), n);
  if (i < 0 || i >= n) return undefined();
  if (v.is_array()) return v[static_cast<size_t>(i)];
  const std::string& s = v.get_ref<const std::string&>();
  auto off = char_offsets(s);
  return s.substr(off[i], off[i + 1] - off[i]);
}

Value py_slice(const Value& v, const Value& start, const Value& stop, const Value& step, Pos pos) {
  if (!(v.is_array() || v.is_string()))
    fail_at(pos, fmt::format("cannot slice a value of type {}", type_name(v)));
  auto as_int = [&](const Value& x, int64_t dflt) -> int64_t {
    if (x.is_discarded() || x.is_null()) return dflt;
    if (!x.is_number_integer()) fail_at(pos, "slice indices must be integers");
    return x.get<int64_t>();
  };
  const int64_t n = py_len(v);
  const int64_t st = as_int(step, 1);
  if (st == 0) fail_at(pos, "slice step cannot be zero");
  auto clamp = [&](const Value& x, int64_t dflt) {
    if (x.is_discarded() || x.is_null()) return dflt;
    int64_t i = norm_index(as_int(x, 0), n);
    return st > 0 ? std::clamp<int64_t>(i, 0, n) : std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t b = clamp(start, st > 0 ? 0 : n - 1), e = clamp(stop, st > 0 ? n : -1);
  std::vector<int64_t> idx;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) idx.push_back(i);
  if (v.is_array()) {
    Value out = Value::array();
    for (int64_t i : idx) out.push_back(v[static_cast<size_t>(i)]);
    return out;
  }
  const std::string& s = v.get_ref<const std::string&>();
  auto off = char_offsets(s);
  std::string out;
  for (int64_t i : idx) out += s.substr(off[i], off[i + 1] - off[i]);
  return out;
}

std::vector<Value> py_iter(const Value& v, Pos pos) {
  std::vector<Value> items;
  if (v.is_discarded()) return items;  // jinja iterates an undefined value as empty
  if (v.is_array()) {
    items.assign(v.begin(), v.end());
  } else if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) items.emplace_back(it.key());
  } else if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    auto off = char_offsets(s);
    for (size_t i = 0; i + 1 < off.size(); ++i)
      items.emplace_back(s.substr(off[i], off[i + 1] - off[i]));
  } else {
    fail_at(pos, fmt::format("'{}' object is not iterable", type_name(v)));
  }
  return items;
}

}  // namespace sllm::tok::jinja
