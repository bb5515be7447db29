// The Jinja subset behind chat templates: lexer whitespace rules, parser precedence, evaluator
// semantics, error positions, and the real templates of six model families rendered exactly as
// transformers renders them (tests/data/chat_templates/expected.json, checked against
// transformers by tests/reference/chat_templates.py).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "sllm/error.h"
#include "tokenizer/jinja.h"

using sllm::tok::jinja::Template;
using sllm::tok::jinja::Value;

namespace {

std::string render(const std::string& src, const Value& ctx = Value::object()) {
  return Template(src).render(ctx);
}

std::string error_of(const std::string& src, const Value& ctx = Value::object()) {
  try {
    render(src, ctx);
  } catch (const sllm::Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f) << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const std::string kData = std::string(SLLM_SOURCE_DIR) + "/tests/data/chat_templates/";

}  // namespace

TEST(TokenizerJinja, WhitespaceControl) {
  // trim_blocks + lstrip_blocks, as transformers compiles templates
  EXPECT_EQ(render("a\n  {% if true %}\n  b\n  {% endif %}\nc"), "a\n  b\nc");
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif %}"), "ab");
  EXPECT_EQ(render("x {{- ' y ' -}} z"), "x y z");
  EXPECT_EQ(render("a {# note #}\nb"), "a b");
  EXPECT_EQ(render("  {# note #}\nb"), "b");
  EXPECT_EQ(render("{{ 'a' }}\n{{ 'b' }}"), "a\nb");  // variable tags keep their newline
  EXPECT_EQ(render("a\n  {%+ if true %}b{% endif +%}\nc"), "a\n  b\nc");
}

TEST(TokenizerJinja, ExpressionsAndPrecedence) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}"),
            "7|9|3|-4|2");
  EXPECT_EQ(render("{{ 7 / 2 }}|{{ 2 ** 3 }}|{{ 1 ~ 'a' ~ none }}"), "3.5|8|1aNone");
  EXPECT_EQ(render("{{ 'a' + 'b' | upper }}"), "aB");  // filters bind tighter than +
  EXPECT_EQ(render("{{ not x | length == 1 }}", {{"x", {1}}}), "False");
  EXPECT_EQ(render("{{ 'yes' if 2 > 1 else 'no' }}{{ 'x' if false }}"), "yes");
  EXPECT_EQ(render("{{ 'a' if '' else 'b' }}{{ 'c' if ' ' }}{{ [] or 'd' }}"), "bcd");
  EXPECT_EQ(render("{{ 1 == 1.0 }}{{ 'b' in 'abc' }}{{ 2 not in [1, 3] }}{{ 'k' in {'k': 1} }}"),
            "TrueTrueTrueTrue");
  EXPECT_EQ(render("{{ none or 'd' }}|{{ 0 and 1 }}|{{ [1, 'a', none, true, 1.5] }}"),
            "d|0|[1, 'a', None, True, 1.5]");
  EXPECT_EQ(render("{{ {'a': \"it's\", 'b': [{}]} }}"), "{'a': \"it's\", 'b': [{}]}");
}

TEST(TokenizerJinja, SubscriptsSlicesAndMethods) {
  Value ctx = {{"m", {{"role", "user"}, {"content", " Héllo wörld "}}}, {"xs", {1, 2, 3, 4}}};
  EXPECT_EQ(render("{{ m.role }}{{ m['role'] }}{{ xs[-1] }}{{ xs.0 }}", ctx), "useruser41");
  EXPECT_EQ(render("{{ xs[1:] }}{{ xs[:-1] }}{{ xs[::-1] }}{{ xs[::2] }}", ctx),
            "[2, 3, 4][1, 2, 3][4, 3, 2, 1][1, 3]");
  EXPECT_EQ(render("{{ m.content[1:4] }}|{{ m.content[-3] }}", ctx), "Hél|l");
  EXPECT_EQ(
      render("[{{ m.content.strip() }}][{{ m.content.lstrip() }}][{{ 'xxaxx'.strip('x') }}]", ctx),
      "[Héllo wörld][Héllo wörld ][a]");
  EXPECT_EQ(render("{{ 'a b  c'.split() }}{{ 'a,b,,c'.split(',') }}{{ 'a,b,c'.split(',', 1) }}"),
            "['a', 'b', 'c']['a', 'b', '', 'c']['a', 'b,c']");
  EXPECT_EQ(render("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}"
                   "{{ 'aXa'.replace('a', 'b') }}{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}"),
            "TrueTruebXbABab");
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.keys() | list }}"
                   "{{ d.get('z', 0) }}{{ d.get('a') }}",
                   {{"d", Value::parse(R"({"b": 1, "a": 2})")}}),
            "b=1;a=2;['b', 'a']02");
  EXPECT_EQ(render("{{ m.missing is defined }}{{ m.content.content is defined }}", ctx),
            "FalseFalse");
}

TEST(TokenizerJinja, LoopsSetAndNamespace) {
  Value ctx = {{"xs", {"a", "b", "c"}}};
  EXPECT_EQ(render("{% for x in xs %}{{ loop.index0 }}{{ loop.index }}{{ x }}"
                   "{% if loop.first %}F{% endif %}{% if loop.last %}L{{ loop.length }}{% endif %}"
                   "{% endfor %}",
                   ctx),
            "01aF12b23cL3");
  EXPECT_EQ(render("{% for x in xs if x != 'b' %}{{ loop.index }}{{ x }}{% endfor %}", ctx),
            "1a2c");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in xs %}{% if x == 'b' %}{% continue %}{% endif %}{{ x }}"
                   "{% if x == 'c' %}{% break %}{% endif %}{% endfor %}",
                   ctx),
            "ac");
  // `set` inside a loop stays in the loop; a namespace carries state out of it
  EXPECT_EQ(
      render("{% set n = 0 %}{% set ns = namespace(n=0) %}{% for x in xs %}{% set n = n + 1 %}"
             "{% set ns.n = ns.n + 1 %}{% endfor %}{{ n }}{{ ns.n }}",
             ctx),
      "03");
  EXPECT_EQ(render("{% set a, b = [1, 2] %}{% set t %}x{{ a + b }}{% endset %}{{ t }}"), "x3");
}

TEST(TokenizerJinja, FiltersAndTests) {
  Value msgs = Value::parse(
      R"([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
          {"role": "user", "content": "c"}])");
  Value ctx = {{"msgs", msgs}};
  EXPECT_EQ(render("{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') "
                   "| join(',') }}",
                   ctx),
            "a,c");
  EXPECT_EQ(render("{{ msgs | rejectattr('role', 'eq', 'user') | list | length }}", ctx), "1");
  EXPECT_EQ(render("{{ ['a', 'code', 'b'] | reject('equalto', 'code') | join(', ') }}"), "a, b");
  EXPECT_EQ(
      render("{{ (msgs | first).content }}{{ (msgs | last).content }}{{ 'ab' | length }}", ctx),
      "ac2");
  EXPECT_EQ(render("[{{ '  x \n' | trim }}]{{ u | default('d') }}{{ '' | default('e', true) }}"),
            "[x]de");
  EXPECT_EQ(
      render("{{ 3 | string + 'x' }}{{ 'aB' | upper }}{{ 'aB' | lower }}{{ 'ab' | capitalize }}"),
      "3xABabAb");
  EXPECT_EQ(render("{{ x is string }}{{ x is mapping }}{{ d is mapping }}{{ x is iterable }}"
                   "{{ n is none }}{{ n is not none }}{{ u is defined }}{{ 3 is odd }}"
                   "{{ 4 is divisibleby 2 }}{{ x is number }}",
                   {{"x", "s"}, {"d", Value::object()}, {"n", nullptr}}),
            "TrueFalseTrueTrueTrueFalseFalseTrueTrueFalse");
}

TEST(TokenizerJinja, ToJsonMatchesPython) {
  Value v = Value::parse(R"({"b": "Zürich \"q\" <t>\n", "a": [1, 2.5, true, null, {}], "e": []})");
  Value ctx = {{"v", v}};
  EXPECT_EQ(render("{{ v | tojson }}", ctx),
            R"({"b": "Zürich \"q\" <t>\n", "a": [1, 2.5, true, null, {}], "e": []})");
  EXPECT_EQ(render("{{ v.a | tojson(indent=2) }}", ctx),
            "[\n  1,\n  2.5,\n  true,\n  null,\n  {}\n]");
  EXPECT_EQ(render("{{ v | tojson(sort_keys=true) }}", ctx).substr(0, 6), R"({"a": )");
}

TEST(TokenizerJinja, Globals) {
  EXPECT_EQ(render("{{ range(3) | list }}{{ strftime_now is defined }}{{ other is defined }}"),
            "[0, 1, 2]TrueFalse");
  EXPECT_EQ(render("{{ strftime_now('%Y') | length }}"), "4");
  EXPECT_NE(error_of("{{ raise_exception('Roles must alternate') }}")
                .find("chat template: Roles must alternate"),
            std::string::npos);
}

TEST(TokenizerJinja, ErrorsNameTheLineAndColumn) {
  EXPECT_NE(error_of("ok\n{% macro f() %}{% endmacro %}").find("line 2, column 4"),
            std::string::npos);
  EXPECT_NE(error_of("ok\n{% macro f() %}").find("unsupported statement '{% macro %}'"),
            std::string::npos);
  EXPECT_NE(error_of("{{ x | nosuchfilter }}").find("line 1, column 6: unsupported filter"),
            std::string::npos);
  EXPECT_NE(error_of("{% if x %}a").find("missing '{% endif %}'"), std::string::npos);
  EXPECT_NE(error_of("{{ 'a' ").find("unclosed tag"), std::string::npos);
  EXPECT_NE(error_of("{{ 'a }}").find("unterminated string"), std::string::npos);
  EXPECT_NE(error_of("{{ x.y }}").find("line 1, column 5"), std::string::npos);  // undefined x
  EXPECT_NE(error_of("{{ 1 + 'a' }}").find("unsupported operand types for +"), std::string::npos);
  EXPECT_NE(error_of("{{ [1 2] }}").find("line 1, column 7: expected ']' (found '2')"),
            std::string::npos);
  EXPECT_NE(error_of("{{ (1 }}").find("unclosed tag"), std::string::npos);
}

// Every template of tests/data/chat_templates over every conversation of expected.json.
TEST(TokenizerJinja, MatchesTransformers) {
  const auto cases = nlohmann::ordered_json::parse(read(kData + "expected.json"));
  ASSERT_GE(cases.size(), 100u);
  std::map<std::string, std::unique_ptr<Template>> templates;
  int checked = 0;
  for (const auto& c : cases) {
    const std::string name = c["template"];
    auto& t = templates[name];
    if (!t) t = std::make_unique<Template>(read(kData + name + ".jinja"));
    SCOPED_TRACE(name + " / " + c["case"].get<std::string>());
    if (c.contains("output")) {
      EXPECT_EQ(t->render(c["context"]), c["output"].get<std::string>());
    } else {
      try {
        t->render(c["context"]);
        ADD_FAILURE() << "no error, transformers raised: " << c["error"];
      } catch (const sllm::Error& e) {
        EXPECT_NE(std::string(e.what()).find(c["error"].get<std::string>()), std::string::npos)
            << e.what();
      }
    }
    ++checked;
  }
  EXPECT_EQ(templates.size(), 6u);
  EXPECT_EQ(checked, static_cast<int>(cases.size()));
}
