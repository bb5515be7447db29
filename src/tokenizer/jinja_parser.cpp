// Jinja parser: tokens -> statement nodes and expression trees, with jinja2's operator
// precedence (if-else < or < and < not < comparisons < + - < ~ < * / // % < ** < unary <
// filters, tests and postfix).
#include <fmt/format.h>

#include <initializer_list>
#include <set>
#include <stdexcept>

#include "tokenizer/jinja.h"

namespace sllm::tok::jinja {

namespace {

class Parser {
 public:
  explicit Parser(const std::vector<Token>& t) : t_(t) {}

  std::vector<Node> run() {
    std::string end;
    auto nodes = parse_body({}, end);
    return nodes;
  }

 private:
  const Token& cur() const { return t_[i_]; }
  const Token& next() { return t_[i_++]; }
  bool is_op(const char* op) const { return cur().kind == TokKind::op && cur().text == op; }
  bool is_name(const char* n) const { return cur().kind == TokKind::name && cur().text == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    ++i_;
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    ++i_;
    return true;
  }
  [[noreturn]] void fail_here(const std::string& what) const {
    const Token& t = cur();
    std::string got = t.kind == TokKind::eof         ? "end of template"
                      : t.kind == TokKind::var_end   ? "'}}'"
                      : t.kind == TokKind::block_end ? "'%}'"
                                                     : "'" + t.text + "'";
    fail_at(t.pos, fmt::format("{} (found {})", what, got));
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail_here(fmt::format("expected '{}'", op));
  }
  std::string expect_name() {
    if (cur().kind != TokKind::name) fail_here("expected a name");
    return next().text;
  }
  void expect_block_end() {
    if (cur().kind != TokKind::block_end) fail_here("expected '%}'");
    ++i_;
  }

  static Node node(NodeKind k, Pos p) {
    Node n;
    n.kind = k;
    n.pos = p;
    return n;
  }

  static ExprPtr make(ExprKind k, Pos p, std::string name = {}) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->pos = p;
    e->name = std::move(name);
    return e;
  }

  // Statements until one of `ends` opens a block tag; its name is returned in `end` (the tag's
  // remaining tokens are left for the caller).
  std::vector<Node> parse_body(const std::set<std::string>& ends, std::string& end) {
    std::vector<Node> out;
    while (true) {
      const Token& t = cur();
      if (t.kind == TokKind::eof) {
        for (const auto& e : ends)
          if (e.rfind("end", 0) == 0)
            fail_at(t.pos, fmt::format("unexpected end of template: missing '{{% {} %}}'", e));
        return out;
      }
      if (t.kind == TokKind::text) {
        Node n = node(NodeKind::text, t.pos);
        n.text = t.text;
        out.push_back(std::move(n));
        ++i_;
      } else if (t.kind == TokKind::var_begin) {
        ++i_;
        Node n = node(NodeKind::output, t.pos);
        n.expr = parse_expr();
        if (cur().kind != TokKind::var_end) fail_here("expected '}}'");
        ++i_;
        out.push_back(std::move(n));
      } else if (t.kind == TokKind::block_begin) {
        ++i_;
        const Token& kw = cur();
        if (kw.kind != TokKind::name) fail_here("expected a statement name");
        if (ends.count(kw.text)) {
          end = next().text;
          return out;
        }
        out.push_back(parse_statement());
      } else {
        fail_here("unexpected token");
      }
    }
  }

  Node parse_statement() {
    const Token& kw = next();
    Node n = node(NodeKind::text, kw.pos);
    const std::string& k = kw.text;
    std::string end;
    if (k == "if") {
      n.kind = NodeKind::if_;
      ExprPtr cond = parse_expr();
      while (true) {
        expect_block_end();
        auto body = parse_body({"elif", "else", "endif"}, end);
        n.branches.emplace_back(std::move(cond), std::move(body));
        if (end == "endif") break;
        if (end == "else") {
          expect_block_end();
          n.branches.emplace_back(nullptr, parse_body({"endif"}, end));
          break;
        }
        cond = parse_expr();
      }
    } else if (k == "for") {
      n.kind = NodeKind::for_;
      do {
        n.targets.push_back(expect_name());
      } while (skip_op(","));
      if (!skip_name("in")) fail_here("expected 'in' in a for loop");
      n.expr = parse_or_tuple(false);
      if (skip_name("if")) n.filter = parse_expr();
      if (is_name("recursive")) fail_here("recursive loops are not supported");
      expect_block_end();
      n.body = parse_body({"else", "endfor"}, end);
      if (end == "else") {
        expect_block_end();
        n.else_body = parse_body({"endfor"}, end);
      }
    } else if (k == "set") {
      n.kind = NodeKind::set;
      n.targets.push_back(expect_name());
      if (skip_op(".")) {
        n.attr = expect_name();
      } else {
        while (skip_op(",")) n.targets.push_back(expect_name());
      }
      if (cur().kind == TokKind::block_end && n.attr.empty() && n.targets.size() == 1) {
        n.kind = NodeKind::set_block;
        expect_block_end();
        n.body = parse_body({"endset"}, end);
      } else {
        expect_op("=");
        n.expr = parse_or_tuple(true);
      }
    } else if (k == "break" || k == "continue") {
      n.kind = k == "break" ? NodeKind::break_ : NodeKind::continue_;
    } else if (k == "generation") {  // transformers' assistant-mask marker: renders its body
      n.kind = NodeKind::block;
      expect_block_end();
      n.body = parse_body({"endgeneration"}, end);
    } else {
      fail_at(kw.pos, fmt::format("unsupported statement '{{% {} %}}'", k));
    }
    expect_block_end();
    return n;
  }

  // `a, b` (a list) where jinja accepts a tuple without parentheses.
  ExprPtr parse_or_tuple(bool condexpr) {
    Pos p = cur().pos;
    ExprPtr first = condexpr ? parse_expr() : parse_or();
    if (!is_op(",")) return first;
    auto list = make(ExprKind::list, p);
    list->args.push_back(std::move(first));
    while (skip_op(",")) list->args.push_back(condexpr ? parse_expr() : parse_or());
    return list;
  }

  ExprPtr parse_expr() {
    ExprPtr e = parse_or();
    while (is_name("if")) {
      auto t = make(ExprKind::ternary, next().pos);
      ExprPtr cond = parse_or();
      ExprPtr other = skip_name("else") ? parse_expr() : nullptr;
      t->args.push_back(std::move(e));
      t->args.push_back(std::move(cond));
      t->args.push_back(std::move(other));
      e = std::move(t);
    }
    return e;
  }

  ExprPtr binary(std::string op, Pos p, ExprPtr l, ExprPtr r) {
    auto b = make(ExprKind::binary, p, std::move(op));
    b->args.push_back(std::move(l));
    b->args.push_back(std::move(r));
    return b;
  }

  // One precedence level of left-associative binary operators (keywords or symbols).
  using Level = ExprPtr (Parser::*)();
  ExprPtr left_assoc(Level operand, std::initializer_list<const char*> ops, bool keywords) {
    ExprPtr e = (this->*operand)();
    while (true) {
      const char* hit = nullptr;
      for (const char* op : ops)
        if (keywords ? is_name(op) : is_op(op)) hit = op;
      if (!hit) return e;
      Pos p = next().pos;
      e = binary(hit, p, std::move(e), (this->*operand)());
    }
  }
  ExprPtr parse_or() { return left_assoc(&Parser::parse_and, {"or"}, true); }
  ExprPtr parse_and() { return left_assoc(&Parser::parse_not, {"and"}, true); }
  ExprPtr parse_not() {
    if (is_name("not")) {
      auto u = make(ExprKind::unary, next().pos, "not");
      u->args.push_back(parse_not());
      return u;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr e = parse_math1();
    while (true) {
      Pos p = cur().pos;
      if (cur().kind == TokKind::op &&
          (is_op("==") || is_op("!=") || is_op("<") || is_op(">") || is_op("<=") || is_op(">="))) {
        std::string op = next().text;
        e = binary(op, p, std::move(e), parse_math1());
      } else if (skip_name("in")) {
        e = binary("in", p, std::move(e), parse_math1());
      } else if (is_name("not") && t_[i_ + 1].kind == TokKind::name && t_[i_ + 1].text == "in") {
        i_ += 2;
        e = binary("not in", p, std::move(e), parse_math1());
      } else {
        return e;
      }
    }
  }
  ExprPtr parse_math1() { return left_assoc(&Parser::parse_concat, {"+", "-"}, false); }
  ExprPtr parse_concat() { return left_assoc(&Parser::parse_math2, {"~"}, false); }
  ExprPtr parse_math2() { return left_assoc(&Parser::parse_pow, {"*", "/", "//", "%"}, false); }
  ExprPtr parse_pow() { return left_assoc(&Parser::parse_filtered_unary, {"**"}, false); }
  ExprPtr parse_filtered_unary() { return parse_unary(true); }
  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      e = make(ExprKind::unary, t.pos, t.text);
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filters(std::move(e)) : std::move(e);
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    Pos p = t.pos;
    if (t.kind == TokKind::name) {
      ++i_;
      auto lit = make(ExprKind::literal, p);
      if (t.text == "true" || t.text == "True") {
        lit->value = true;
      } else if (t.text == "false" || t.text == "False") {
        lit->value = false;
      } else if (t.text == "none" || t.text == "None") {
        lit->value = nullptr;
      } else {
        return make(ExprKind::name, p, t.text);
      }
      return lit;
    }
    if (t.kind == TokKind::str) {
      auto lit = make(ExprKind::literal, p);
      std::string s;
      while (cur().kind == TokKind::str) s += next().text;  // adjacent literals concatenate
      lit->value = s;
      return lit;
    }
    if (t.kind == TokKind::num) {
      ++i_;
      auto lit = make(ExprKind::literal, p);
      try {
        if (t.text.find('.') != std::string::npos)
          lit->value = std::stod(t.text);
        else
          lit->value = static_cast<int64_t>(std::stoll(t.text));
      } catch (const std::out_of_range&) {
        fail_at(p, "number literal out of range");
      }
      return lit;
    }
    if (skip_op("(")) {
      if (skip_op(")")) return make(ExprKind::list, p);
      ExprPtr e = parse_or_tuple(true);
      expect_op(")");
      return e;
    }
    if (skip_op("[")) {
      auto list = make(ExprKind::list, p);
      while (!is_op("]")) {
        list->args.push_back(parse_expr());
        if (!skip_op(",")) break;
      }
      expect_op("]");
      return list;
    }
    if (skip_op("{")) {
      auto dict = make(ExprKind::dict, p);
      while (!is_op("}")) {
        dict->args.push_back(parse_expr());
        expect_op(":");
        dict->args.push_back(parse_expr());
        if (!skip_op(",")) break;
      }
      expect_op("}");
      return dict;
    }
    fail_here("expected an expression");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      Pos p = cur().pos;
      if (skip_op(".")) {
        auto g = make(ExprKind::getattr, p);
        if (cur().kind == TokKind::num) {  // foo.0 is foo[0]
          g->kind = ExprKind::getitem;
          g->args.push_back(std::move(e));
          g->args.push_back(parse_primary());
        } else {
          g->name = expect_name();
          g->args.push_back(std::move(e));
        }
        e = std::move(g);
      } else if (skip_op("[")) {
        e = parse_subscript(std::move(e), p);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, Pos p) {
    ExprPtr parts[3];
    int n = 0;
    bool is_slice = false;
    while (true) {
      if (!is_op(":") && !is_op("]")) parts[n] = parse_expr();
      if (is_op(":") && n < 2) {
        ++i_;
        ++n;
        is_slice = true;
        continue;
      }
      break;
    }
    expect_op("]");
    auto g = make(is_slice ? ExprKind::slice : ExprKind::getitem, p);
    g->args.push_back(std::move(obj));
    if (!is_slice) {
      if (!parts[0]) fail_at(p, "empty subscript");
      g->args.push_back(std::move(parts[0]));
    } else {
      for (auto& part : parts) g->args.push_back(std::move(part));
    }
    return g;
  }

  // (args...) after a callee, filter or test: positional, then name=value.
  void parse_args(Expr& e) {
    expect_op("(");
    while (!is_op(")")) {
      if (cur().kind == TokKind::name && t_[i_ + 1].kind == TokKind::op && t_[i_ + 1].text == "=") {
        std::string key = next().text;
        ++i_;
        e.kwargs.emplace_back(key, parse_expr());
      } else {
        if (!e.kwargs.empty()) fail_here("positional argument after a keyword argument");
        e.args.push_back(parse_expr());
      }
      if (!skip_op(",")) break;
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = make(ExprKind::call, cur().pos);
    c->args.push_back(std::move(callee));
    parse_args(*c);
    return c;
  }

  ExprPtr parse_filters(ExprPtr e) {
    while (true) {
      Pos p = cur().pos;
      if (skip_op("|")) {
        auto f = make(ExprKind::filter, p, expect_name());
        f->args.push_back(std::move(e));
        if (is_op("(")) parse_args(*f);
        e = std::move(f);
      } else if (skip_name("is")) {
        auto t = make(ExprKind::test, p);
        t->negated = skip_name("not");
        t->name = expect_name();
        t->args.push_back(std::move(e));
        const Token& a = cur();
        if (is_op("(")) {
          parse_args(*t);
        } else if ((a.kind == TokKind::name && a.text != "else" && a.text != "or" &&
                    a.text != "and") ||
                   a.kind == TokKind::str || a.kind == TokKind::num || is_op("[") || is_op("{")) {
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  const std::vector<Token>& t_;
  size_t i_ = 0;
};

}  // namespace

std::vector<Node> parse(const std::vector<Token>& tokens) { return Parser(tokens).run(); }

}  // namespace sllm::tok::jinja
