// config: file loading, overrides, layered validation; plus the small core utilities
// (progress bar, memory, timer) under the ConfigCore suite.
#include "core/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/memory.h"
#include "core/progress.h"
#include "core/timer.h"

namespace {

using nlohmann::json;
namespace config = sllm::config;
namespace fs = std::filesystem;

class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sllm_config_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const auto p = (dir_ / name).string();
    std::ofstream(p) << text;
    return p;
  }
  fs::path dir_;
};

json defaults() {
  return {
      {"model", nullptr},
      {"dtype", "fp32"},
      {"ctx", 0},
      {"json", false},
      {"sampling",
       {{"temperature", 0.7}, {"top_k", 0}, {"top_p", 1.0}, {"seed", 42}, {"stop", json::array()}}},
      {"engine", {{"block_size", 16}, {"max_seqs", 16}}}};
}

// Runs resolve and returns the error message ("" if it succeeded).
std::string resolve_error(const std::vector<config::Layer>& layers) {
  try {
    config::resolve(defaults(), layers);
  } catch (const sllm::Error& e) {
    return e.what();
  }
  return "";
}

TEST_F(ConfigFiles, LoadsYamlWithCoreSchemaTypes) {
  const auto p = write("x.yaml",
                       "# comment\n"
                       "model: models/m.gguf\n"
                       "a_int: 12\n"
                       "a_float: 0.25\n"
                       "a_exp: 1e3\n"
                       "a_bool: true\n"
                       "a_null: ~\n"
                       "a_empty:\n"
                       "quoted: '12'\n"
                       "dquoted: \"true\"\n"
                       "hex: 0x1F\n"
                       "list: [1, two, 3.5]\n"
                       "nested:\n  deeper:\n    k: v\n");
  const json j = config::load_file(p);
  EXPECT_EQ(j["model"], "models/m.gguf");
  EXPECT_TRUE(j["a_int"].is_number_integer());
  EXPECT_EQ(j["a_int"], 12);
  EXPECT_TRUE(j["a_float"].is_number_float());
  EXPECT_DOUBLE_EQ(j["a_float"].get<double>(), 0.25);
  EXPECT_TRUE(j["a_exp"].is_number_float());
  EXPECT_EQ(j["a_bool"], true);
  EXPECT_TRUE(j["a_null"].is_null());
  EXPECT_TRUE(j["a_empty"].is_null());
  EXPECT_EQ(j["quoted"], "12");
  EXPECT_EQ(j["dquoted"], "true");
  EXPECT_EQ(j["hex"], 31);
  EXPECT_EQ(j["list"], json::parse(R"([1, "two", 3.5])"));
  EXPECT_EQ(j["nested"]["deeper"]["k"], "v");
}

TEST_F(ConfigFiles, LoadsJsonAndEmptyYaml) {
  const auto p = write("x.json", R"({"sampling": {"top_k": 5}, "json": true})");
  const json j = config::load_file(p);
  EXPECT_EQ(j["sampling"]["top_k"], 5);
  EXPECT_EQ(j["json"], true);
  EXPECT_EQ(config::load_file(write("empty.yml", "")), json::object());
}

TEST_F(ConfigFiles, YamlSyntaxErrorNamesFileAndLine) {
  const auto p = write("bad.yaml", "model: m\nsampling: [1, 2\nctx: 3\n");
  try {
    config::load_file(p);
    FAIL() << "expected an error";
  } catch (const sllm::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(p), std::string::npos) << m;
    EXPECT_NE(m.find("YAML syntax error"), std::string::npos) << m;
    EXPECT_NE(m.find(p + ":3:"), std::string::npos) << m;  // line 3, where the flow list breaks
  }
}

TEST_F(ConfigFiles, JsonSyntaxErrorNamesFileAndLine) {
  const auto p = write("bad.json", "{\n  \"a\": 1,\n  \"b\": ,\n}\n");
  try {
    config::load_file(p);
    FAIL() << "expected an error";
  } catch (const sllm::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(p + ":3:"), std::string::npos) << m;
    EXPECT_NE(m.find("JSON syntax error"), std::string::npos) << m;
  }
}

TEST_F(ConfigFiles, DuplicateYamlKeyAndMissingFile) {
  EXPECT_THROW(config::load_file(write("dup.yaml", "a: 1\na: 2\n")), sllm::Error);
  try {
    config::load_file((dir_ / "nope.yaml").string());
    FAIL();
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.yaml"), std::string::npos);
  }
}

TEST_F(ConfigFiles, FileThenOverrideThenFlags) {
  const auto p = write("x.yaml", "sampling:\n  temperature: 0.2\n  top_k: 40\ndtype: bf16\n");
  json over = json::object();
  config::apply_override(over, "sampling.top_k=5");
  config::apply_override(over, "engine.max_seqs=4");
  const json flags = {{"dtype", "fp16"}};
  const json cfg = config::resolve(
      defaults(), {{p, config::load_file(p)}, {"override", over}, {"command line", flags}});
  EXPECT_DOUBLE_EQ(config::get<double>(cfg, "sampling.temperature"), 0.2);
  EXPECT_EQ(config::get<int64_t>(cfg, "sampling.top_k"), 5);
  EXPECT_EQ(config::get<int>(cfg, "engine.max_seqs"), 4);
  EXPECT_EQ(config::get<int>(cfg, "engine.block_size"), 16);  // untouched sibling kept
  EXPECT_EQ(config::get<std::string>(cfg, "dtype"), "fp16");
  EXPECT_DOUBLE_EQ(config::get<double>(cfg, "sampling.top_p"), 1.0);
}

TEST(Config, ParseScalar) {
  EXPECT_EQ(config::parse_scalar("0.2"), json(0.2));
  EXPECT_TRUE(config::parse_scalar("3").is_number_integer());
  EXPECT_EQ(config::parse_scalar("-3"), json(-3));
  EXPECT_EQ(config::parse_scalar("true"), json(true));
  EXPECT_EQ(config::parse_scalar("False"), json(false));
  EXPECT_TRUE(config::parse_scalar("null").is_null());
  EXPECT_TRUE(config::parse_scalar("~").is_null());
  EXPECT_EQ(config::parse_scalar("[1,2]"), json::parse("[1,2]"));
  EXPECT_EQ(config::parse_scalar("[a, 'b c']"), json::parse(R"(["a","b c"])"));
  EXPECT_EQ(config::parse_scalar("{a: 1}"), json::parse(R"({"a":1})"));
  EXPECT_EQ(config::parse_scalar("foo"), json("foo"));
  EXPECT_EQ(config::parse_scalar("'7'"), json("7"));
  EXPECT_EQ(config::parse_scalar("\"a\\tb\""), json("a\tb"));
  // Text a YAML parser would reinterpret stays as typed.
  EXPECT_EQ(config::parse_scalar("Question: why? # not a comment"),
            json("Question: why? # not a comment"));
  EXPECT_EQ(config::parse_scalar("- item"), json("- item"));
  EXPECT_EQ(config::parse_scalar("1.2.3"), json("1.2.3"));
  EXPECT_EQ(config::parse_scalar(" 5 "), json(5));
  EXPECT_EQ(config::parse_scalar(" a b "), json(" a b "));
  EXPECT_EQ(config::parse_scalar(""), json());
  EXPECT_EQ(config::parse_scalar("1e3"), json(1000.0));
  EXPECT_EQ(config::parse_scalar(".5"), json(0.5));
  EXPECT_EQ(config::parse_scalar("0o17"), json(15));
  EXPECT_EQ(config::parse_scalar("-.inf"), json(-std::numeric_limits<double>::infinity()));
  EXPECT_EQ(config::parse_scalar("1e"), json("1e"));
  EXPECT_EQ(config::parse_scalar("+"), json("+"));
  EXPECT_EQ(config::parse_scalar("-"), json("-"));
  EXPECT_THROW(config::parse_scalar("[1, 2"), sllm::Error);
}

TEST(Config, ApplyOverride) {
  json cfg = json::object();
  config::apply_override(cfg, "a.b.c=1");
  config::apply_override(cfg, "a.b.d=x=y");  // only the first '=' splits
  config::apply_override(cfg, " top = [1, 2]");
  EXPECT_EQ(cfg["a"]["b"]["c"], 1);
  EXPECT_EQ(cfg["a"]["b"]["d"], "x=y");
  EXPECT_EQ(cfg["top"], json::parse("[1,2]"));
  EXPECT_THROW(config::apply_override(cfg, "no_equals"), sllm::Error);
  EXPECT_THROW(config::apply_override(cfg, "=3"), sllm::Error);
  EXPECT_THROW(config::apply_override(cfg, "a..b=3"), sllm::Error);
}

TEST(Config, AllProblemsReportedAtOnce) {
  const json file = {{"sampling", {{"temprature", 0.5}, {"top_k", 1.5}}}, {"dtyp", "bf16"}};
  const json flags = {{"sampling", {{"top_k", "abc"}}}, {"json", 1}};
  const std::string m = resolve_error({{"configs/x.yaml", file}, {"command line", flags}});
  EXPECT_NE(m.find("5 problems"), std::string::npos) << m;
  EXPECT_NE(m.find("configs/x.yaml: unknown key 'sampling.temprature' (did you mean "
                   "'sampling.temperature'?)"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("configs/x.yaml: unknown key 'dtyp' (did you mean 'dtype'?)"), std::string::npos)
      << m;
  EXPECT_NE(m.find("configs/x.yaml: key 'sampling.top_k' must be an integer, got float 1.5"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("command line: key 'sampling.top_k' must be an integer, got string \"abc\""),
            std::string::npos)
      << m;
  // An integer is not a boolean.
  EXPECT_NE(m.find("command line: key 'json' must be a boolean"), std::string::npos) << m;
}

TEST(Config, SingleProblemIsTheWholeMessage) {
  const std::string m = resolve_error({{"command line", {{"ctx", "big"}}}});
  EXPECT_EQ(m, "command line: key 'ctx' must be an integer, got string \"big\"");
}

TEST(Config, DidYouMeanAcrossDepths) {
  // A key at the wrong depth is found by its last word.
  EXPECT_NE(
      resolve_error({{"f", {{"temperature", 0.1}}}}).find("did you mean 'sampling.temperature'"),
      std::string::npos);
  EXPECT_NE(
      resolve_error({{"f", {{"engine", {{"seed", 1}}}}}}).find("did you mean 'sampling.seed'"),
      std::string::npos);
  EXPECT_NE(resolve_error({{"f", {{"cxt", 1}}}}).find("did you mean 'ctx'"), std::string::npos);
  // Nothing close: no suggestion.
  const std::string m = resolve_error({{"f", {{"completely_different", 1}}}});
  EXPECT_EQ(m, "f: unknown key 'completely_different'");
}

TEST(Config, IntegerVersusFloat) {
  // Integer where a float is expected: accepted, stored as float.
  const json cfg = config::resolve(defaults(), {{"f", {{"sampling", {{"temperature", 1}}}}}});
  EXPECT_TRUE(cfg["sampling"]["temperature"].is_number_float());
  EXPECT_DOUBLE_EQ(config::get<double>(cfg, "sampling.temperature"), 1.0);
  // Float where an integer is expected: rejected, even when integral.
  EXPECT_NE(
      resolve_error({{"f", {{"ctx", 512.0}}}}).find("key 'ctx' must be an integer, got float"),
      std::string::npos);
  // get<> follows the same rules.
  EXPECT_THROW(config::get<int64_t>(cfg, "sampling.temperature"), sllm::Error);
  EXPECT_EQ(config::get<double>(cfg, "ctx"), 0.0);
}

TEST(Config, StringsNullsAndLists) {
  const json cfg = config::resolve(
      defaults(), {{"f", {{"model", 123}, {"dtype", true}, {"sampling", {{"stop", {"###", 1}}}}}}});
  EXPECT_EQ(cfg["model"], "123");  // a number where a string is expected keeps its text
  EXPECT_EQ(cfg["dtype"], "true");
  EXPECT_EQ(cfg["sampling"]["stop"], json::parse(R"(["###", 1])"));  // [] default: list of anything
  // null is fine for an optional string, not for a string with a default.
  EXPECT_NO_THROW(config::resolve(defaults(), {{"f", {{"model", nullptr}}}}));
  EXPECT_NE(resolve_error({{"f", {{"dtype", nullptr}}}}).find("key 'dtype' must be a string"),
            std::string::npos);
  EXPECT_NE(resolve_error({{"f", {{"sampling", {{"stop", "###"}}}}}}).find("must be a list"),
            std::string::npos);
  EXPECT_NE(resolve_error({{"f", {{"sampling", 3}}}}).find("key 'sampling' must be a mapping"),
            std::string::npos);
  EXPECT_NE(resolve_error({{"f", json::array()}}).find("top level must be a mapping"),
            std::string::npos);
}

TEST(Config, DottedKeysInsideALayer) {
  const json cfg =
      config::resolve(defaults(), {{"f", {{"sampling.top_k", 7}, {"engine", {{"max_seqs", 2}}}}}});
  EXPECT_EQ(cfg["sampling"]["top_k"], 7);
  EXPECT_EQ(cfg["engine"]["max_seqs"], 2);
  EXPECT_DOUBLE_EQ(cfg["sampling"]["temperature"].get<double>(), 0.7);
}

TEST(Config, GetErrorsNameTheKey) {
  const json cfg = defaults();
  try {
    config::get<int64_t>(cfg, "sampling.nope");
    FAIL();
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'sampling.nope'"), std::string::npos);
  }
  try {
    config::get<std::string>(cfg, "ctx");
    FAIL();
  } catch (const sllm::Error& e) {
    EXPECT_EQ(std::string(e.what()), "config key 'ctx' must be a string, got integer 0");
  }
  EXPECT_THROW(config::get<std::string>(cfg, "model"), sllm::Error);  // null: not set
  EXPECT_THROW(config::get<int8_t>(json{{"x", 300}}, "x"), sllm::Error);
  EXPECT_THROW(config::get<uint32_t>(json{{"x", -1}}, "x"), sllm::Error);
  EXPECT_EQ(config::get<std::vector<std::string>>(json{{"x", {"a", "b"}}}, "x"),
            (std::vector<std::string>{"a", "b"}));
}

TEST(Config, FlattenRoundTripsThroughOverrides) {
  json cfg = defaults();
  cfg["model"] = "models/m.gguf";
  cfg["dtype"] = "0.5";  // a string that looks like a number must be quoted
  cfg["sampling"]["stop"] = {"a b", "c"};
  const auto lines = config::flatten(cfg);
  ASSERT_FALSE(lines.empty());
  EXPECT_TRUE(std::is_sorted(lines.begin(), lines.end()));
  EXPECT_NE(std::find(lines.begin(), lines.end(), "model=models/m.gguf"), lines.end());
  EXPECT_NE(std::find(lines.begin(), lines.end(), "dtype=\"0.5\""), lines.end());
  EXPECT_NE(std::find(lines.begin(), lines.end(), "sampling.temperature=0.7"), lines.end());
  EXPECT_NE(std::find(lines.begin(), lines.end(), "engine.block_size=16"), lines.end());
  json back = json::object();
  for (const auto& l : lines) config::apply_override(back, l);
  EXPECT_EQ(back, cfg);
}

TEST(Config, DeepMerge) {
  json dst = {{"a", 1},
              {"s", {{"x", 1}, {"y", {1, 2}}, {"deep", {{"k", "v"}, {"j", 0}}}}},
              {"list", {1, 2, 3}},
              {"scalar", 5},
              {"opt", "set"}};
  const json src = {{"s", {{"y", {3}}, {"z", true}, {"deep", {{"j", 9}}}}},
                    {"list", json::array()},
                    {"scalar", {{"now", "a mapping"}}},
                    {"opt", nullptr},
                    {"new", {{"n", 1}}}};
  config::deep_merge(dst, src);
  const json want = {{"a", 1},
                     {"s", {{"x", 1}, {"y", {3}}, {"z", true}, {"deep", {{"k", "v"}, {"j", 9}}}}},
                     {"list", json::array()},
                     {"scalar", {{"now", "a mapping"}}},
                     {"opt", nullptr},  // a null is a value, not a deletion
                     {"new", {{"n", 1}}}};
  EXPECT_EQ(dst, want);
  // A mapping onto a scalar replaces it, and the other way round.
  json s = 3;
  config::deep_merge(s, json{{"a", 1}});
  EXPECT_EQ(s, json({{"a", 1}}));
  config::deep_merge(s, json("text"));
  EXPECT_EQ(s, json("text"));
  json e = json::object();
  config::deep_merge(e, json::object());
  EXPECT_EQ(e, json::object());
}

// ---- core utilities ----

std::string read_all(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  for (int c; (c = std::fgetc(f)) != EOF;) s += static_cast<char>(c);
  return s;
}

TEST(ConfigCore, ProgressBarPlainPrintsEveryTenPercent) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    sllm::ProgressBar bar("eval", 1000, f, /*tty=*/false);
    for (int i = 1; i <= 1000; ++i) bar.update(i, "loss 1.0");
    bar.finish();
    bar.finish();  // idempotent
  }
  const std::string out = read_all(f);
  std::fclose(f);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 10) << out;  // 10%..90% and the end
  EXPECT_EQ(out.find('\r'), std::string::npos);
  EXPECT_NE(out.find("eval  50% 500/1000"), std::string::npos) << out;
  EXPECT_NE(out.find("eval 100% 1000/1000"), std::string::npos) << out;
  EXPECT_NE(out.find("loss 1.0"), std::string::npos);
}

TEST(ConfigCore, ProgressBarTtyRedrawsInPlaceThrottled) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    sllm::ProgressBar bar("load", 100000, f, /*tty=*/true);
    for (int i = 1; i <= 100000; ++i) bar.update(i);
    bar.finish();
  }
  const std::string out = read_all(f);
  std::fclose(f);
  const auto redraws = std::count(out.begin(), out.end(), '\r');
  EXPECT_GE(redraws, 2);
  EXPECT_LT(redraws, 100);  // throttled, not one per update
  EXPECT_EQ(out.back(), '\n');
  EXPECT_NE(out.find("[####################] 100% 100000/100000"), std::string::npos) << out;
}

TEST(ConfigCore, MemoryAndTimer) {
  EXPECT_EQ(sllm::memory::format_bytes(512), "512 B");
  EXPECT_EQ(sllm::memory::format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(sllm::memory::format_bytes(uint64_t(12.3 * 1024 * 1024)), "12.3 MiB");
  EXPECT_EQ(sllm::memory::format_bytes(1024ull * 1024 * 1024 - 1), "1.0 GiB");
  EXPECT_EQ(sllm::memory::format_bytes(3ull << 40), "3.0 TiB");
  const auto rss = sllm::memory::current_rss_bytes();
  EXPECT_GT(rss, 0u);
  EXPECT_GE(sllm::memory::peak_rss_bytes(), rss);
  sllm::Timer t;
  EXPECT_GE(t.ms(), 0.0);
  EXPECT_LT(t.seconds(), 5.0);
  t.reset();
  EXPECT_LT(t.ms(), 1000.0);
}

}  // namespace
