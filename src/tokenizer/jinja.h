// A Jinja2 subset for chat templates: the text of `tokenizer.chat_template` (GGUF) or
// tokenizer_config.json's `chat_template`, rendered as transformers' apply_chat_template renders
// it (jinja2 with trim_blocks, lstrip_blocks, loop controls, raise_exception, strftime_now,
// namespace and a tojson that does not escape HTML). Supported syntax: docs/chat_templates.md.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sllm::tok::jinja {

// Template values are JSON values with Python's key order; "undefined" is a discarded value.
using Value = nlohmann::ordered_json;
inline Value undefined() { return Value(Value::value_t::discarded); }
inline bool is_undefined(const Value& v) { return v.is_discarded(); }

struct Pos {
  int line = 1, col = 1;
};

// ---- lexer
enum class TokKind { text, var_begin, var_end, block_begin, block_end, name, str, num, op, eof };

struct Token {
  TokKind kind;
  std::string text;  // text, name, operator, unescaped string, number source
  Pos pos;
};

// Splits a template into text and tag tokens, applying whitespace control ({%- -%}, trim_blocks,
// lstrip_blocks) and dropping comments. Throws sllm::Error with line:column on bad syntax.
std::vector<Token> lex(const std::string& src);

// ---- AST
enum class ExprKind {
  literal,
  name,
  list,
  dict,
  getattr,
  getitem,
  slice,
  call,
  filter,
  test,
  unary,
  binary,
  ternary
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

// Operands by kind: getattr {obj}.name; getitem {obj, index}; slice {obj, start, stop, step}
// (null when omitted); call {callee, args...}; filter/test {input, args...} with name; unary
// {operand} with name "not"/"-"/"+"; binary {lhs, rhs} with the operator as name; ternary
// {then, cond, else (may be null)}; list {items...}; dict {key, value, key, value...}.
struct Expr {
  ExprKind kind = ExprKind::literal;
  Pos pos;
  Value value;  // literal
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;  // `is not`
};

enum class NodeKind { text, output, if_, for_, set, set_block, break_, continue_, block };

struct Node {
  NodeKind kind = NodeKind::text;
  Pos pos;
  std::string text;                  // text
  ExprPtr expr;                      // output value, set value, for iterable
  std::vector<std::string> targets;  // for/set names; `set ns.attr` has targets {ns} and attr
  std::string attr;
  ExprPtr filter;                                               // for ... if filter
  std::vector<std::pair<ExprPtr, std::vector<Node>>> branches;  // if/elif/else (else: null cond)
  std::vector<Node> body, else_body;                            // for/set_block/block bodies
};

std::vector<Node> parse(const std::vector<Token>& tokens);

// ---- template
class Template {
 public:
  // Parses once; throws sllm::Error "chat template line L, column C: ..." on unsupported syntax.
  explicit Template(const std::string& source);
  // Renders with the given global variables (messages, add_generation_prompt, bos_token, ...).
  // raise_exception() in the template and runtime errors throw sllm::Error.
  std::string render(const Value& context) const;

 private:
  std::shared_ptr<const std::vector<Node>> nodes_;
};

// Python's str() of a value (what {{ x }} prints) and json.dumps as transformers' tojson calls it.
std::string to_py_str(const Value& v);
std::string to_py_json(const Value& v, int indent = -1, bool sort_keys = false);
bool truthy(const Value& v);

// Errors raised while rendering carry the template position of the failing expression.
[[noreturn]] void fail_at(Pos pos, const std::string& message);

}  // namespace sllm::tok::jinja
