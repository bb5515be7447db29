// options: one table per option group -> defaults tree, reference YAML, struct filling.
#include "core/options.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/config.h"
#include "core/error.h"

namespace {

using nlohmann::json;
namespace options = sllm::options;
namespace config = sllm::config;
namespace fs = std::filesystem;

options::Table table() {
  return {{"model", nullptr, "model file", "-m,--model"},
          {"ctx", 0, "context length", "--ctx"},
          {"sampling.temperature", 0.7, "0 = greedy", "--temperature"},
          {"sampling.stop", json::array(), "stop strings", "--stop"},
          {"json", false, "JSON output", "--json"},
          {"engine.block_size", 16, "KV block size"},
          {"sampling.top_k", 0, "top k (0: off)"}};
}

// Writes text to a temporary .yaml file and reads it back as a config file.
json load_yaml(const std::string& text) {
  const auto p =
      fs::temp_directory_path() / ("sllm_options_test_" + std::to_string(getpid()) + ".yaml");
  std::ofstream(p) << text;
  json j = config::load_file(p.string());
  fs::remove(p);
  return j;
}

TEST(Options, DefaultsTreeNestsDottedKeys) {
  const json d = options::defaults(table());
  const json want = {{"model", nullptr},
                     {"ctx", 0},
                     {"json", false},
                     {"sampling", {{"temperature", 0.7}, {"stop", json::array()}, {"top_k", 0}}},
                     {"engine", {{"block_size", 16}}}};
  EXPECT_EQ(d, want);
  EXPECT_TRUE(d["sampling"]["temperature"].is_number_float());
  EXPECT_TRUE(d["ctx"].is_number_integer());
}

TEST(Options, TableMistakesAreErrors) {
  auto message = [](const options::Table& t) {
    try {
      options::defaults(t);
    } catch (const sllm::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message({{"a", 1, "x"}, {"a", 2, "y"}}).find("'a' is declared twice"),
            std::string::npos);
  EXPECT_NE(message({{"a", 1, "x"}, {"a.b", 2, "y"}}).find("'a.b' is inside 'a', which is a value"),
            std::string::npos);
  EXPECT_NE(message({{"a.b", 1, "x"}, {"a", 2, "y"}}).find("'a' is declared twice"),
            std::string::npos);
  EXPECT_NE(message({{"a..b", 1, "x"}}).find("empty part"), std::string::npos);
  EXPECT_NE(message({{"a", 1, ""}}).find("'a' needs a one-line help"), std::string::npos);
  EXPECT_NE(message({{"a", 1, "two\nlines"}}).find("'a' needs a one-line help"), std::string::npos);
  EXPECT_EQ(message(table()), "");
}

TEST(Options, YamlListsEveryKeyWithHelpAndFlag) {
  const auto t = table();
  const std::string y = options::to_yaml(t, options::defaults(t), "sllm x: keys\nsecond line");
  const std::string want =
      "# sllm x: keys\n"
      "# second line\n"
      "\n"
      "# model file [-m, --model]\n"
      "model: null\n"
      "# context length [--ctx]\n"
      "ctx: 0\n"
      "\n"
      "sampling:\n"
      "  # 0 = greedy [--temperature]\n"
      "  temperature: 0.7\n"
      "  # stop strings [--stop]\n"
      "  stop: []\n"
      "  # top k (0: off)\n"
      "  top_k: 0\n"
      "\n"
      "# JSON output [--json]\n"
      "json: false\n"
      "\n"
      "engine:\n"
      "  # KV block size\n"
      "  block_size: 16\n";
  EXPECT_EQ(y, want);
}

TEST(Options, YamlReadsBackAsTheSameValues) {
  const options::Table t = {
      {"plain", "models/m.gguf", "h"},
      {"looks_bool", "true", "h"},
      {"looks_number", "0.5", "h"},
      {"looks_null", "null", "h"},
      {"empty", "", "h"},
      {"marker", "### Response:", "h"},
      {"comment", "a # b", "h"},
      {"quote", "say \"hi\"\nbye", "h"},
      {"unicode", "안녕 😀", "h"},
      {"leading_dash", "-x", "h"},
      {"none", nullptr, "h"},
      {"tiny", 1e-8, "h"},
      {"lr", 2e-4, "h"},
      {"whole_float", 32.0, "h"},
      {"negative", -1, "h"},
      {"big", int64_t{1} << 40, "h"},
      {"yes", true, "h"},
      {"words", {"q_proj", "k_proj", "a b", "1", "x,y"}, "h"},
      {"mixed", json::parse(R"([1, 2.5, null, true, "[x]"])"), "h"},
      {"map", json::parse(R"({"k": "v", "n": {"m": 1}})"), "h"},
      {"nested.deeper.key", "v", "h"},
  };
  const json d = options::defaults(t);
  const json back = load_yaml(options::to_yaml(t, d, "header"));
  EXPECT_EQ(back, d) << options::to_yaml(t, d, "header");
  EXPECT_TRUE(back["whole_float"].is_number_float());
  // Non-finite floats (possible in a resolved config) print as YAML's .inf / .nan.
  json odd = d;
  odd["tiny"] = std::numeric_limits<double>::infinity();
  odd["lr"] = std::nan("");
  const json odd_back = load_yaml(options::to_yaml(t, odd, ""));
  EXPECT_TRUE(std::isinf(odd_back["tiny"].get<double>()));
  EXPECT_TRUE(std::isnan(odd_back["lr"].get<double>()));
}

TEST(Options, YamlPrintsResolvedValuesAndSectionsTurnedOff) {
  const auto t = table();
  const json cfg = config::resolve(
      options::defaults(t), {{"f", {{"sampling", nullptr}, {"ctx", 64}, {"model", "m.gguf"}}}});
  const std::string y = options::to_yaml(t, cfg, "");
  EXPECT_NE(y.find("model: m.gguf\n"), std::string::npos) << y;
  EXPECT_NE(y.find("ctx: 64\n"), std::string::npos) << y;
  EXPECT_NE(y.find("sampling: null\n"), std::string::npos) << y;
  EXPECT_EQ(y.find("temperature"), std::string::npos) << y;
  EXPECT_EQ(y.find("#"), y.find("# model file"));  // no header when none is given
  EXPECT_EQ(load_yaml(y), cfg);
}

struct Settings {
  double temperature = 0;
  int64_t ctx = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  bool json = false;
};

const options::Group<Settings>& group() {
  using G = options::Group<Settings>;
  static const G g{
      G::member({"sampling.temperature", 0.7, "t"}, &Settings::temperature),
      G::member({"ctx", 512, "c", "--ctx"}, &Settings::ctx),
      G::with<int64_t>({"seed", 42, "s"},
                       [](Settings& s, int64_t v) { s.seed = static_cast<uint64_t>(v); }),
      G::member({"sampling.stop", json::array(), "st"}, &Settings::stop),
      G::plain({"model", nullptr, "read by the app", "-m,--model"}),
      G::member({"json", false, "j"}, &Settings::json),
  };
  return g;
}

TEST(Options, GroupFillsItsStruct) {
  const auto t = group().table();
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t[1].key, "ctx");
  EXPECT_EQ(t[1].flag, "--ctx");
  EXPECT_EQ(t[4].key, "model");
  const json d = options::defaults(t);
  const Settings a = group().fill(d);  // the defaults
  EXPECT_DOUBLE_EQ(a.temperature, 0.7);
  EXPECT_EQ(a.ctx, 512);
  EXPECT_EQ(a.seed, 42u);
  EXPECT_TRUE(a.stop.empty());
  EXPECT_FALSE(a.json);

  const json cfg = config::resolve(
      d, {{"f",
           {{"sampling", {{"temperature", 0}, {"stop", {"###"}}}}, {"seed", -1}, {"json", true}}}});
  const Settings b = group().fill(cfg);
  EXPECT_DOUBLE_EQ(b.temperature, 0.0);
  EXPECT_EQ(b.seed, ~uint64_t{0});  // a negative seed wraps, as the conversion says
  EXPECT_EQ(b.stop, std::vector<std::string>{"###"});
  EXPECT_TRUE(b.json);

  // Filling starts from a given struct; plain options leave it alone.
  Settings base;
  base.ctx = 7;
  EXPECT_EQ(group().fill(d, base).ctx, 512);
}

TEST(Options, GroupFillErrorsNameTheKey) {
  json cfg = options::defaults(group().table());
  cfg["sampling"]["stop"] = {1, 2};  // a list of anything passes resolve; the member wants text
  try {
    group().fill(cfg);
    FAIL() << "expected an error";
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'sampling.stop'"), std::string::npos) << e.what();
  }
  cfg = options::defaults(group().table());
  cfg.erase("ctx");
  EXPECT_THROW(group().fill(cfg), sllm::Error);
}

TEST(Options, JoinKeepsOrder) {
  const auto j = options::join({{{"a", 1, "x"}}, {}, {{"b", 2, "y"}, {"c", 3, "z"}}});
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[0].key, "a");
  EXPECT_EQ(j[2].key, "c");
}

}  // namespace
