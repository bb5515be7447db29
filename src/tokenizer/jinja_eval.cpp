// Jinja evaluator: walks the parsed template with a stack of variable scopes (a for loop opens
// one, as in jinja2, so `set` inside a loop does not leak out; namespace() objects carry state
// across iterations).
#include <fmt/format.h>

#include <cmath>
#include <ctime>
#include <map>
#include <utility>

#include "core/error.h"
#include "tokenizer/jinja.h"
#include "tokenizer/jinja_builtins.h"

namespace sllm::tok::jinja {

namespace {

const char* const kGlobals[] = {"raise_exception", "strftime_now", "namespace", "range", "dict"};

bool is_global_fn(const std::string& n) {
  for (const char* g : kGlobals)
    if (n == g) return true;
  return false;
}

// Checks filter and test names once, so an unsupported one fails before rendering.
void check_names(const Expr* e) {
  if (!e) return;
  if (e->kind == ExprKind::filter && !has_filter(e->name))
    fail_at(e->pos, fmt::format("unsupported filter '{}'", e->name));
  if (e->kind == ExprKind::test && !has_test(e->name))
    fail_at(e->pos, fmt::format("unsupported test '{}'", e->name));
  for (const auto& a : e->args) check_names(a.get());
  for (const auto& [k, v] : e->kwargs) check_names(v.get());
}

void check_names(const std::vector<Node>& nodes) {
  for (const auto& n : nodes) {
    check_names(n.expr.get());
    check_names(n.filter.get());
    for (const auto& [cond, body] : n.branches) {
      check_names(cond.get());
      check_names(body);
    }
    check_names(n.body);
    check_names(n.else_body);
  }
}

enum class Flow { normal, brk, cont };

class Renderer {
 public:
  explicit Renderer(const Value& ctx) {
    scopes_.emplace_back();
    for (auto it = ctx.begin(); it != ctx.end(); ++it) scopes_.back()[it.key()] = it.value();
    scopes_.emplace_back();  // the template's own top-level assignments
  }

  std::string out;

  Flow exec(const std::vector<Node>& nodes) {
    for (const auto& n : nodes) {
      Flow f = exec(n);
      if (f != Flow::normal) return f;
    }
    return Flow::normal;
  }

 private:
  Flow exec(const Node& n) {
    switch (n.kind) {
      case NodeKind::text:
        out += n.text;
        break;
      case NodeKind::output:
        out += to_py_str(eval(*n.expr));
        break;
      case NodeKind::if_:
        for (const auto& [cond, body] : n.branches)
          if (!cond || truthy(eval(*cond))) return exec(body);
        break;
      case NodeKind::for_:
        return exec_for(n);
      case NodeKind::set:
        exec_set(n);
        break;
      case NodeKind::set_block: {
        std::string saved = std::move(out);
        out.clear();
        exec(n.body);
        scopes_.back()[n.targets[0]] = std::exchange(out, std::move(saved));
        break;
      }
      case NodeKind::block:
        return exec(n.body);
      case NodeKind::break_:
        if (loop_depth_ == 0) fail_at(n.pos, "'break' outside a for loop");
        return Flow::brk;
      case NodeKind::continue_:
        if (loop_depth_ == 0) fail_at(n.pos, "'continue' outside a for loop");
        return Flow::cont;
    }
    return Flow::normal;
  }

  void bind(const std::vector<std::string>& targets, const Value& v, Pos pos) {
    auto& scope = scopes_.back();
    if (targets.size() == 1) {
      scope[targets[0]] = v;
      return;
    }
    if (!v.is_array() || v.size() != targets.size())
      fail_at(pos, fmt::format("cannot unpack {} into {} names", type_name(v), targets.size()));
    for (size_t i = 0; i < targets.size(); ++i) scope[targets[i]] = v[i];
  }

  void exec_set(const Node& n) {
    Value v = eval(*n.expr);
    if (n.attr.empty()) {
      bind(n.targets, v, n.pos);
      return;
    }
    Value* ns = find(n.targets[0]);
    if (!ns || !ns->is_object())
      fail_at(n.pos,
              fmt::format("'{}' is not a namespace: create it with namespace()", n.targets[0]));
    (*ns)[n.attr] = v;
  }

  Flow exec_for(const Node& n) {
    std::vector<Value> items = py_iter(eval(*n.expr), n.expr->pos);
    scopes_.emplace_back();
    ++loop_depth_;
    if (n.filter) {  // `for x in xs if cond`: loop.* counts the kept items only
      std::vector<Value> kept;
      for (auto& it : items) {
        bind(n.targets, it, n.pos);
        if (truthy(eval(*n.filter))) kept.push_back(it);
      }
      items = std::move(kept);
    }
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      bind(n.targets, items[i], n.pos);
      scopes_.back()["loop"] = Value{{"index0", i},
                                     {"index", i + 1},
                                     {"revindex0", len - i - 1},
                                     {"revindex", len - i},
                                     {"first", i == 0},
                                     {"last", i == len - 1},
                                     {"length", len},
                                     {"previtem", i > 0 ? items[i - 1] : undefined()},
                                     {"nextitem", i + 1 < len ? items[i + 1] : undefined()}};
      if (exec(n.body) == Flow::brk) break;
    }
    --loop_depth_;
    scopes_.pop_back();
    if (items.empty()) exec(n.else_body);
    return Flow::normal;
  }

  Value* find(const std::string& name) {
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s)
      if (auto it = s->find(name); it != s->end()) return &it->second;
    return nullptr;
  }

  Value eval(const Expr& e) {
    switch (e.kind) {
      case ExprKind::literal:
        return e.value;
      case ExprKind::name: {
        const Value* v = find(e.name);
        return v ? *v : undefined();
      }
      case ExprKind::list: {
        Value out = Value::array();
        for (const auto& a : e.args) out.push_back(eval(*a));
        return out;
      }
      case ExprKind::dict: {
        Value out = Value::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = eval(*e.args[i]);
          if (!k.is_string()) fail_at(e.args[i]->pos, "dict keys must be strings");
          out[k.get<std::string>()] = eval(*e.args[i + 1]);
        }
        return out;
      }
      case ExprKind::getattr: {
        Value obj = eval(*e.args[0]);
        if (obj.is_discarded()) fail_at(e.pos, fmt::format("'{}' of an undefined value", e.name));
        return py_getitem(obj, e.name);
      }
      case ExprKind::getitem: {
        Value obj = eval(*e.args[0]);
        if (obj.is_discarded()) fail_at(e.pos, "subscript of an undefined value");
        return py_getitem(obj, eval(*e.args[1]));
      }
      case ExprKind::slice: {
        auto opt = [&](size_t i) { return e.args[i] ? eval(*e.args[i]) : undefined(); };
        return py_slice(eval(*e.args[0]), opt(1), opt(2), opt(3), e.pos);
      }
      case ExprKind::call:
        return call(e);
      case ExprKind::filter: {
        auto [args, kw] = eval_args(e);
        return apply_filter(e.name, eval(*e.args[0]), args, kw, e.pos);
      }
      case ExprKind::test: {
        const Expr& in = *e.args[0];
        bool r;
        if ((e.name == "defined" || e.name == "undefined") && in.kind == ExprKind::name &&
            !find(in.name) && is_global_fn(in.name)) {
          r = e.name == "defined";
        } else {
          auto [args, kw] = eval_args(e);
          r = apply_test(e.name, eval(in), args, e.pos);
        }
        return r != e.negated;
      }
      case ExprKind::unary: {
        Value v = eval(*e.args[0]);
        if (e.name == "not") return !truthy(v);
        if (!v.is_number())
          fail_at(e.pos, fmt::format("bad operand type for unary {}: {}", e.name, type_name(v)));
        if (e.name == "+") return v;
        return v.is_number_integer() ? Value(-v.get<int64_t>()) : Value(-v.get<double>());
      }
      case ExprKind::binary:
        return binary(e);
      case ExprKind::ternary:
        if (truthy(eval(*e.args[1]))) return eval(*e.args[0]);
        return e.args[2] ? eval(*e.args[2]) : undefined();
    }
    return undefined();
  }

  // Positional and keyword arguments of a call, filter or test (operand 0 is its input).
  std::pair<Args, Kwargs> eval_args(const Expr& e) {
    Args args;
    Kwargs kw;
    for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
    for (const auto& [k, v] : e.kwargs) kw.emplace_back(k, eval(*v));
    return {args, kw};
  }

  Value call(const Expr& e) {
    const Expr& callee = *e.args[0];
    auto [args, kw] = eval_args(e);
    if (callee.kind == ExprKind::getattr) {
      Value obj = eval(*callee.args[0]);
      if (obj.is_discarded())
        fail_at(e.pos, fmt::format("'{}' of an undefined value", callee.name));
      return call_method(obj, callee.name, args, kw, e.pos);
    }
    if (callee.kind != ExprKind::name || find(callee.name))
      fail_at(
          e.pos,
          "only raise_exception, strftime_now, namespace, range, dict and methods can be called");
    const std::string& fn = callee.name;
    if (fn == "raise_exception")
      SLLM_FAIL("chat template: {}", args.empty() ? std::string("error") : to_py_str(args[0]));
    if (fn == "namespace" || fn == "dict") {
      Value ns = args.empty() || !args[0].is_object() ? Value::object() : args[0];
      for (auto& [k, v] : kw) ns[k] = v;
      return ns;
    }
    if (fn == "strftime_now") {
      if (args.empty() || !args[0].is_string())
        fail_at(e.pos, "strftime_now needs a format string");
      std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[256];
      size_t n = std::strftime(buf, sizeof buf, args[0].get<std::string>().c_str(), &tm);
      return std::string(buf, n);
    }
    if (fn == "range") {
      for (auto& a : args)
        if (!a.is_number_integer()) fail_at(e.pos, "range needs integers");
      int64_t b = 0, end = 0, step = 1;
      if (args.size() == 1) end = args[0].get<int64_t>();
      if (args.size() >= 2) b = args[0].get<int64_t>(), end = args[1].get<int64_t>();
      if (args.size() == 3) step = args[2].get<int64_t>();
      if (args.empty() || args.size() > 3 || step == 0)
        fail_at(e.pos, "range needs 1 to 3 arguments, step not 0");
      Value out = Value::array();
      for (int64_t i = b; step > 0 ? i < end : i > end; i += step) out.push_back(i);
      return out;
    }
    fail_at(e.pos, fmt::format("'{}' is not a function the chat template can call", fn));
  }

  Value arith(const std::string& op, const Value& l, const Value& r, Pos pos) {
    if (op == "+" && l.is_string() && r.is_string())
      return l.get<std::string>() + r.get<std::string>();
    if (op == "+" && l.is_array() && r.is_array()) {
      Value out = l;
      for (auto& x : r) out.push_back(x);
      return out;
    }
    if (op == "*" && l.is_string() && r.is_number_integer()) {
      std::string out;
      for (int64_t i = 0; i < r.get<int64_t>(); ++i) out += l.get<std::string>();
      return out;
    }
    if (!l.is_number() || !r.is_number())
      fail_at(pos, fmt::format("unsupported operand types for {}: '{}' and '{}'", op, type_name(l),
                               type_name(r)));
    const bool ints = l.is_number_integer() && r.is_number_integer();
    const double a = l.get<double>(), b = r.get<double>();
    if ((op == "/" || op == "//" || op == "%") && b == 0) fail_at(pos, "division by zero");
    if (op == "/") return a / b;
    if (op == "**")
      return ints && b >= 0 ? Value(static_cast<int64_t>(std::pow(a, b))) : Value(std::pow(a, b));
    if (ints) {
      const int64_t x = l.get<int64_t>(), y = r.get<int64_t>();
      if (op == "+") return x + y;
      if (op == "-") return x - y;
      if (op == "*") return x * y;
      int64_t q = x / y;
      if ((x % y != 0) && ((x < 0) != (y < 0))) --q;  // Python floors
      return op == "//" ? q : x - q * y;
    }
    if (op == "+") return a + b;
    if (op == "-") return a - b;
    if (op == "*") return a * b;
    if (op == "//") return std::floor(a / b);
    return a - std::floor(a / b) * b;
  }

  Value binary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value l = eval(*e.args[0]);
      return truthy(l) ? eval(*e.args[1]) : l;
    }
    if (op == "or") {
      Value l = eval(*e.args[0]);
      return truthy(l) ? l : eval(*e.args[1]);
    }
    Value l = eval(*e.args[0]), r = eval(*e.args[1]);
    if (op == "~") return to_py_str(l) + to_py_str(r);
    if (op == "==") return py_eq(l, r);
    if (op == "!=") return !py_eq(l, r);
    if (op == "in" || op == "not in") {
      if (r.is_discarded() || r.is_null() || r.is_number() || r.is_boolean())
        fail_at(e.pos, fmt::format("argument of type '{}' is not iterable", type_name(r)));
      if (r.is_string() && !l.is_string())
        fail_at(e.pos, fmt::format("'in <string>' requires a string, not {}", type_name(l)));
      return apply_test("in", l, {r}, e.pos) == (op == "in");
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") return apply_test(op, l, {r}, e.pos);
    for (const Value* v : {&l, &r})
      if (v->is_discarded()) fail_at(e.pos, fmt::format("undefined value in '{}'", op));
    return arith(op, l, r, e.pos);
  }

  std::vector<std::map<std::string, Value>> scopes_;
  int loop_depth_ = 0;
};

}  // namespace

Template::Template(const std::string& source) {
  auto nodes = std::make_shared<std::vector<Node>>(parse(lex(source)));
  check_names(*nodes);
  nodes_ = std::move(nodes);
}

std::string Template::render(const Value& context) const {
  Renderer r(context);
  r.exec(*nodes_);
  return std::move(r.out);
}

}  // namespace sllm::tok::jinja
