// The filters, tests, methods and value semantics (Python's) behind the Jinja evaluator.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja.h"

namespace sllm::tok::jinja {

using Args = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;

// Python semantics.
bool py_eq(const Value& a, const Value& b);
std::string py_strip(std::string_view s, std::string_view chars = {}, bool left = true,
                     bool right = true);
std::string type_name(const Value& v);  // Python's name of the value's type, for messages
// Python's len(); -1 when the value has none.
int64_t py_len(const Value& v);
// v[index] for lists, strings (by character) and dicts; undefined when absent.
Value py_getitem(const Value& v, const Value& index);
Value py_slice(const Value& v, const Value& start, const Value& stop, const Value& step, Pos pos);
// The items a for loop walks: list items, dict keys, string characters.
std::vector<Value> py_iter(const Value& v, Pos pos);

bool has_filter(const std::string& name);
bool has_test(const std::string& name);
Value apply_filter(const std::string& name, const Value& in, const Args& args, const Kwargs& kw,
                   Pos pos);
bool apply_test(const std::string& name, const Value& v, const Args& args, Pos pos);
// obj.name(args) for the str, dict and list methods templates use.
Value call_method(const Value& obj, const std::string& name, const Args& args, const Kwargs& kw,
                  Pos pos);

}  // namespace sllm::tok::jinja
