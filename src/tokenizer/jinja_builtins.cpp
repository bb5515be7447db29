// Filters, tests and the str/dict methods chat templates call, with jinja2's and Python's
// behaviour.
#include "tokenizer/jinja_builtins.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <set>

namespace sllm::tok::jinja {

namespace {

const Value* kwarg(const Kwargs& kw, const char* name) {
  for (const auto& [k, v] : kw)
    if (k == name) return &v;
  return nullptr;
}

// Positional argument i, else keyword `name`, else undefined.
Value arg(const Args& a, const Kwargs& kw, size_t i, const char* name) {
  if (i < a.size()) return a[i];
  const Value* v = kwarg(kw, name);
  return v ? *v : undefined();
}

const std::string& need_str(const Value& v, const std::string& what, Pos pos) {
  if (!v.is_string()) fail_at(pos, fmt::format("{} needs a string, got {}", what, type_name(v)));
  return v.get_ref<const std::string&>();
}

std::string map_ascii(std::string s, int (*f)(int)) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x80) c = static_cast<char>(f(c));
  return s;
}

std::string capitalize(const std::string& s) {
  std::string out = map_ascii(s, [](int c) { return std::tolower(c); });
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

std::string title(std::string s) {
  bool prev_alpha = false;
  for (char& c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    bool alpha = std::isalpha(u) != 0;
    if (alpha) c = static_cast<char>(prev_alpha ? std::tolower(u) : std::toupper(u));
    prev_alpha = alpha;
  }
  return s;
}

std::string replace(const std::string& s, const std::string& from, const std::string& to,
                    int64_t count) {
  if (from.empty()) return s;
  std::string out;
  size_t i = 0;
  for (size_t p; count != 0 && (p = s.find(from, i)) != std::string::npos; --count) {
    out.append(s, i, p - i);
    out += to;
    i = p + from.size();
  }
  return out + s.substr(i);
}

Value split(const std::string& s, const Value& sep, int64_t maxsplit) {
  Value out = Value::array();
  if (sep.is_null() || sep.is_discarded()) {  // runs of whitespace, no empty pieces
    size_t i = 0;
    while (true) {
      while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
      if (i >= s.size()) break;
      if (maxsplit == 0) {
        out.push_back(py_strip(s.substr(i), {}, false, true));
        break;
      }
      size_t e = i;
      while (e < s.size() && !std::isspace(static_cast<unsigned char>(s[e]))) ++e;
      out.push_back(s.substr(i, e - i));
      --maxsplit;
      i = e;
    }
    return out;
  }
  const std::string& d = sep.get_ref<const std::string&>();
  size_t i = 0;
  for (size_t p; maxsplit != 0 && !d.empty() && (p = s.find(d, i)) != std::string::npos;
       --maxsplit) {
    out.push_back(s.substr(i, p - i));
    i = p + d.size();
  }
  out.push_back(s.substr(i));
  return out;
}

bool affix(const std::string& s, const Value& what, bool prefix, Pos pos) {
  auto one = [&](const Value& a) {
    const std::string& x = need_str(a, prefix ? "startswith" : "endswith", pos);
    return s.size() >= x.size() &&
           (prefix ? s.compare(0, x.size(), x) : s.compare(s.size() - x.size(), x.size(), x)) == 0;
  };
  if (what.is_array()) return std::any_of(what.begin(), what.end(), one);
  return one(what);
}

Value attribute(const Value& v, const std::string& path) {
  Value cur = v;
  size_t i = 0;
  while (true) {
    size_t dot = path.find('.', i);
    std::string part = path.substr(i, dot == std::string::npos ? std::string::npos : dot - i);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    cur = py_getitem(cur, digits ? Value(std::stoll(part)) : Value(part));
    if (dot == std::string::npos || cur.is_discarded()) return cur;
    i = dot + 1;
  }
}

// select/reject/selectattr/rejectattr: keep the items whose (attribute) passes the test.
Value select(const Value& in, const Args& a, bool by_attr, bool keep, Pos pos) {
  size_t first = by_attr ? 1 : 0;
  if (by_attr && a.empty()) fail_at(pos, "selectattr/rejectattr need an attribute name");
  Value out = Value::array();
  for (const Value& item : py_iter(in, pos)) {
    Value x = by_attr ? attribute(item, need_str(a[0], "an attribute name", pos)) : item;
    bool pass;
    if (a.size() > first)
      pass = apply_test(need_str(a[first], "a test name", pos), x,
                        Args(a.begin() + first + 1, a.end()), pos);
    else
      pass = truthy(x);
    if (pass == keep) out.push_back(item);
  }
  return out;
}

const std::set<std::string> kFilters = {
    "trim",   "length",  "count",      "tojson",     "string", "upper",   "lower",    "capitalize",
    "title",  "default", "d",          "first",      "last",   "join",    "items",    "list",
    "select", "reject",  "selectattr", "rejectattr", "map",    "replace", "int",      "float",
    "abs",    "reverse", "safe",       "unique",     "sum",    "round",   "wordcount"};

const std::set<std::string> kTests = {"defined",     "undefined", "none",    "string",  "number",
                                      "integer",     "float",     "boolean", "mapping", "iterable",
                                      "sequence",    "true",      "false",   "odd",     "even",
                                      "divisibleby", "equalto",   "eq",      "==",      "ne",
                                      "!=",          "lt",        "<",       "gt",      ">",
                                      "le",          "<=",        "ge",      ">=",      "in",
                                      "sameas",      "lower",     "upper"};

}  // namespace

bool has_filter(const std::string& name) { return kFilters.count(name) > 0; }
bool has_test(const std::string& name) { return kTests.count(name) > 0; }

Value apply_filter(const std::string& f, const Value& in, const Args& a, const Kwargs& kw,
                   Pos pos) {
  if (f == "default" || f == "d") {
    bool boolean = truthy(arg(a, kw, 1, "boolean"));
    bool use = in.is_discarded() || (boolean && !truthy(in));
    Value dflt = arg(a, kw, 0, "default_value");
    return use ? (dflt.is_discarded() ? Value("") : dflt) : in;
  }
  if (f == "string") return to_py_str(in);
  if (f == "safe") return in;
  if (f == "tojson") {
    Value indent = arg(a, kw, 0, "indent");
    return to_py_json(in, indent.is_number_integer() ? indent.get<int>() : -1,
                      truthy(arg(a, kw, 1, "sort_keys")));
  }
  if (f == "length" || f == "count") {
    if (in.is_discarded()) return 0;
    int64_t n = py_len(in);
    if (n < 0) fail_at(pos, fmt::format("object of type '{}' has no len()", type_name(in)));
    return n;
  }
  if (f == "items") {
    Value out = Value::array();
    if (in.is_discarded()) return out;
    if (!in.is_object()) fail_at(pos, fmt::format("items needs a mapping, got {}", type_name(in)));
    for (auto it = in.begin(); it != in.end(); ++it)
      out.push_back(Value::array({it.key(), it.value()}));
    return out;
  }
  if (f == "list") {
    Value out = Value::array();
    for (auto& x : py_iter(in, pos)) out.push_back(x);
    return out;
  }
  if (f == "first" || f == "last") {
    auto items = py_iter(in, pos);
    if (items.empty()) return undefined();
    return f == "first" ? items.front() : items.back();
  }
  if (f == "reverse") {
    if (in.is_string()) return py_slice(in, undefined(), undefined(), -1, pos);
    auto items = py_iter(in, pos);
    std::reverse(items.begin(), items.end());
    return Value(items);
  }
  if (f == "join") {
    Value sep = arg(a, kw, 0, "d");
    Value attr = arg(a, kw, 1, "attribute");
    std::string out;
    bool first = true;
    for (auto& x : py_iter(in, pos)) {
      if (!first) out += sep.is_string() ? sep.get<std::string>() : "";
      out += to_py_str(attr.is_string() ? attribute(x, attr.get<std::string>()) : x);
      first = false;
    }
    return out;
  }
  if (f == "select" || f == "reject") return select(in, a, false, f == "select", pos);
  if (f == "selectattr" || f == "rejectattr") return select(in, a, true, f == "selectattr", pos);
  if (f == "map") {
    Value attr = arg({}, kw, 0, "attribute");
    Value out = Value::array();
    for (auto& x : py_iter(in, pos)) {
      if (attr.is_string())
        out.push_back(attribute(x, attr.get<std::string>()));
      else if (!a.empty())
        out.push_back(
            apply_filter(need_str(a[0], "map", pos), x, Args(a.begin() + 1, a.end()), {}, pos));
      else
        fail_at(pos, "map needs a filter name or attribute=");
    }
    return out;
  }
  if (f == "unique") {
    Value out = Value::array();
    for (auto& x : py_iter(in, pos))
      if (std::none_of(out.begin(), out.end(), [&](const Value& y) { return py_eq(x, y); }))
        out.push_back(x);
    return out;
  }
  if (f == "sum") {
    Value total = 0;
    for (auto& x : py_iter(in, pos)) {
      if (!x.is_number()) fail_at(pos, "sum needs numbers");
      total = total.is_number_integer() && x.is_number_integer()
                  ? Value(total.get<int64_t>() + x.get<int64_t>())
                  : Value(total.get<double>() + x.get<double>());
    }
    return total;
  }
  if (f == "int") {
    if (in.is_number()) return static_cast<int64_t>(in.get<double>());
    if (in.is_string()) {
      try {
        return static_cast<int64_t>(std::stoll(in.get<std::string>()));
      } catch (const std::exception&) {
      }
    }
    Value d = arg(a, kw, 0, "default");
    return d.is_discarded() ? Value(0) : d;
  }
  if (f == "float") {
    if (in.is_number()) return in.get<double>();
    try {
      return std::stod(in.is_string() ? in.get<std::string>() : "");
    } catch (const std::exception&) {
      return 0.0;
    }
  }
  if (f == "abs") {
    if (in.is_number_integer()) return std::llabs(in.get<int64_t>());
    if (in.is_number()) return std::fabs(in.get<double>());
    fail_at(pos, "abs needs a number");
  }
  if (f == "round") {
    if (!in.is_number()) fail_at(pos, "round needs a number");
    Value p = arg(a, kw, 0, "precision");
    double scale = std::pow(10.0, p.is_number_integer() ? p.get<int>() : 0);
    return std::nearbyint(in.get<double>() * scale) / scale;
  }
  if (f == "wordcount") return static_cast<int64_t>(split(to_py_str(in), nullptr, -1).size());
  // string filters: jinja converts the input to a string first
  const std::string s = to_py_str(in);
  if (f == "trim") {
    Value chars = arg(a, kw, 0, "chars");
    return py_strip(s, chars.is_string() ? chars.get<std::string>() : "");
  }
  if (f == "upper") return map_ascii(s, [](int c) { return std::toupper(c); });
  if (f == "lower") return map_ascii(s, [](int c) { return std::tolower(c); });
  if (f == "capitalize") return capitalize(s);
  if (f == "title") return title(s);
  if (f == "replace") {
    Value count = arg(a, kw, 2, "count");
    return replace(s, need_str(arg(a, kw, 0, "old"), "replace", pos),
                   need_str(arg(a, kw, 1, "new"), "replace", pos),
                   count.is_number_integer() ? count.get<int64_t>() : -1);
  }
  fail_at(pos, fmt::format("unsupported filter '{}'", f));
}

bool apply_test(const std::string& t, const Value& v, const Args& a, Pos pos) {
  auto need_arg = [&]() -> const Value& {
    if (a.empty()) fail_at(pos, fmt::format("test '{}' needs an argument", t));
    return a[0];
  };
  if (t == "defined") return !v.is_discarded();
  if (t == "undefined") return v.is_discarded();
  if (t == "none") return v.is_null();
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number() || v.is_boolean();
  if (t == "integer") return v.is_number_integer();
  if (t == "float") return v.is_number_float();
  if (t == "boolean") return v.is_boolean();
  if (t == "mapping") return v.is_object();
  if (t == "iterable") return v.is_string() || v.is_array() || v.is_object() || v.is_discarded();
  if (t == "sequence") return v.is_string() || v.is_array() || v.is_object();
  if (t == "true") return v.is_boolean() && v.get<bool>();
  if (t == "false") return v.is_boolean() && !v.get<bool>();
  if (t == "lower" || t == "upper") {
    if (!v.is_string()) return false;
    const std::string& s = v.get_ref<const std::string&>();
    return s == apply_filter(t, v, {}, {}, pos).get<std::string>();
  }
  if (t == "odd" || t == "even" || t == "divisibleby") {
    if (!v.is_number_integer()) fail_at(pos, fmt::format("test '{}' needs an integer", t));
    int64_t n = v.get<int64_t>();
    if (t == "divisibleby") {
      const Value& d = need_arg();
      if (!d.is_number_integer() || d.get<int64_t>() == 0)
        fail_at(pos, "divisibleby needs a non-zero integer");
      return n % d.get<int64_t>() == 0;
    }
    return (((n % 2) + 2) % 2 == 1) == (t == "odd");
  }
  if (t == "equalto" || t == "eq" || t == "==" || t == "sameas") return py_eq(v, need_arg());
  if (t == "ne" || t == "!=") return !py_eq(v, need_arg());
  if (t == "in") {
    const Value& c = need_arg();
    if (c.is_string() && v.is_string())
      return c.get_ref<const std::string&>().find(v.get<std::string>()) != std::string::npos;
    if (c.is_object()) return v.is_string() && c.contains(v.get<std::string>());
    for (auto& x : py_iter(c, pos))
      if (py_eq(x, v)) return true;
    return false;
  }
  if (t == "lt" || t == "<" || t == "gt" || t == ">" || t == "le" || t == "<=" || t == "ge" ||
      t == ">=") {
    const Value& b = need_arg();
    if (!((v.is_number() && b.is_number()) || (v.is_string() && b.is_string())))
      fail_at(pos, fmt::format("cannot compare {} and {}", type_name(v), type_name(b)));
    bool lt = v < b, gt = b < v;
    if (t == "lt" || t == "<") return lt;
    if (t == "gt" || t == ">") return gt;
    if (t == "le" || t == "<=") return !gt;
    return !lt;
  }
  fail_at(pos, fmt::format("unsupported test '{}'", t));
}

Value call_method(const Value& obj, const std::string& m, const Args& a, const Kwargs& kw,
                  Pos pos) {
  if (obj.is_string()) {
    const std::string& s = obj.get_ref<const std::string&>();
    if (m == "strip" || m == "lstrip" || m == "rstrip") {
      Value chars = arg(a, kw, 0, "chars");
      return py_strip(s, chars.is_string() ? chars.get<std::string>() : "", m != "rstrip",
                      m != "lstrip");
    }
    if (m == "startswith" || m == "endswith")
      return affix(s, arg(a, kw, 0, "prefix"), m == "startswith", pos);
    if (m == "split") {
      Value maxsplit = arg(a, kw, 1, "maxsplit");
      return split(s, arg(a, kw, 0, "sep"),
                   maxsplit.is_number_integer() ? maxsplit.get<int64_t>() : -1);
    }
    if (m == "upper" || m == "lower" || m == "title" || m == "capitalize")
      return apply_filter(m, obj, {}, {}, pos);
    if (m == "replace") {
      Value count = arg(a, kw, 2, "count");
      return replace(s, need_str(arg(a, kw, 0, "old"), "replace", pos),
                     need_str(arg(a, kw, 1, "new"), "replace", pos),
                     count.is_number_integer() ? count.get<int64_t>() : -1);
    }
    if (m == "find") {
      size_t p = s.find(need_str(arg(a, kw, 0, "sub"), "find", pos));
      return p == std::string::npos ? int64_t{-1} : py_len(Value(s.substr(0, p)));
    }
    if (m == "join") {
      std::string out;
      bool first = true;
      for (auto& x : py_iter(arg(a, kw, 0, "iterable"), pos)) {
        out += (first ? "" : s) + need_str(x, "join", pos);
        first = false;
      }
      return out;
    }
  } else if (obj.is_object()) {
    if (m == "items") return apply_filter("items", obj, {}, {}, pos);
    if (m == "keys" || m == "values") {
      Value out = Value::array();
      for (auto it = obj.begin(); it != obj.end(); ++it)
        out.push_back(m == "keys" ? Value(it.key()) : it.value());
      return out;
    }
    if (m == "get") {
      Value v = py_getitem(obj, arg(a, kw, 0, "key"));
      if (!v.is_discarded()) return v;
      Value d = arg(a, kw, 1, "default");
      return d.is_discarded() ? Value(nullptr) : d;
    }
  }
  fail_at(pos, fmt::format("unsupported method '{}' on a value of type {}", m, type_name(obj)));
}

}  // namespace sllm::tok::jinja
