// safetensors writer/reader round trips, sharded HF directories, malformed headers with clear
// errors, corruption fuzzing (never a crash), atomic writes (temp file removed on failure).
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/atomic_write.h"
#include "io/gguf.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using sllm::io::DType;
using sllm::io::SafetensorsFile;
using sllm::io::SafetensorsSet;
using sllm::io::TensorToWrite;

namespace {

fs::path test_dir() {
  const fs::path d =
      fs::temp_directory_path() / ("sllm_test_safetensors_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

class SafetensorsTmpCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(
        fs::temp_directory_path() / ("sllm_test_safetensors_" + std::to_string(::getpid())), ec);
  }
};
[[maybe_unused]] ::testing::Environment* const kSafetensorsCleanup =
    ::testing::AddGlobalTestEnvironment(new SafetensorsTmpCleanup);

std::string write_raw(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return p.string();
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A safetensors file from a header string and a data buffer (header length prefix added).
std::string make_file(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  return s + header + data;
}

std::string open_error(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const sllm::Error& e) {
    return e.what();
  }
  return "";
}

bool has_tmp_files(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

struct Data {
  std::vector<float> f32 = {1.5f, -2.0f, 3.0f, 4.25f, 0.0f, -1e-3f};
  std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x3800};  // 1, -2, 0.5
  std::vector<uint16_t> bf16 = {0x3f80, 0x4040};         // 1, 3
  std::vector<int64_t> i64 = {-5, 1ll << 40};
  std::vector<uint8_t> u8 = {1, 2, 3};  // odd size: later tensors are unaligned
  std::vector<uint8_t> b = {1, 0};
  std::vector<int32_t> i32 = {7};
};

std::vector<TensorToWrite> sample_tensors(const Data& d) {
  return {
      {"model.embed.weight", DType::f32, {2, 3}, d.f32.data(), d.f32.size() * 4},
      {"half", DType::f16, {3}, d.f16.data(), 6},
      {"u8", DType::u8, {3}, d.u8.data(), 3},
      {"brain", DType::bf16, {1, 2}, d.bf16.data(), 4},
      {"ids", DType::i64, {2}, d.i64.data(), 16},
      {"mask", DType::boolean, {2}, d.b.data(), 2},
      {"empty", DType::f32, {0, 4}, nullptr, 0},
      {"scalar", DType::i32, {}, d.i32.data(), 4},
  };
}

}  // namespace

// ---------------------------------------------------------------- round trip

TEST(SafetensorsWrite, RoundTripKeepsBytesOrderAndMetadata) {
  Data d;
  const auto tensors = sample_tensors(d);
  const std::string path = (test_dir() / "rt.safetensors").string();
  sllm::io::write_safetensors(path, tensors, {{"format", "pt"}, {"note", "x y"}});
  EXPECT_FALSE(has_tmp_files(test_dir()));

  // on-disk layout: u64 length, space-padded JSON to a multiple of 8, then data in given order
  const std::string raw = slurp(path);
  uint64_t hlen;
  std::memcpy(&hlen, raw.data(), 8);
  EXPECT_EQ(hlen % 8, 0u);
  const std::string header = raw.substr(8, hlen);
  EXPECT_EQ(header.front(), '{');
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
  const auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["__metadata__"]["format"], "pt");
  EXPECT_EQ(j["half"]["dtype"], "F16");
  EXPECT_EQ(j["mask"]["dtype"], "BOOL");
  EXPECT_EQ(j["model.embed.weight"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(j["half"]["data_offsets"], nlohmann::json({24, 30}));
  EXPECT_EQ(j["scalar"]["shape"], nlohmann::json::array());
  size_t total = 0;
  for (const auto& t : tensors) total += t.nbytes;
  EXPECT_EQ(raw.size(), 8 + hlen + total);

  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata().at("note"), "x y");
  ASSERT_EQ(f.tensors().size(), tensors.size());
  // tensors() is in file order, which is the order given to the writer
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& want = tensors[i];
    EXPECT_EQ(f.tensors()[i].name, want.name);
    const auto* t = f.find(want.name);
    ASSERT_NE(t, nullptr) << want.name;
    EXPECT_EQ(t->dtype, want.dtype) << want.name;
    EXPECT_EQ(t->shape, want.shape) << want.name;
    EXPECT_EQ(t->nbytes, want.nbytes) << want.name;
    EXPECT_EQ(t->ggml_type, 0u);
    if (want.nbytes) {
      EXPECT_EQ(std::memcmp(t->data, want.data, want.nbytes), 0) << want.name;
    }
  }
  EXPECT_EQ(f.find("nope"), nullptr);
  EXPECT_EQ(f.find("scalar")->numel(), 1);
  EXPECT_EQ(f.find("empty")->numel(), 0);

  // float conversion of views (unaligned data included)
  auto to_f32 = [&](const char* name) {
    const auto* t = f.find(name);
    std::vector<float> out(static_cast<size_t>(t->numel()));
    sllm::io::dequantize_to_f32(*t, out.data());
    return out;
  };
  EXPECT_EQ(to_f32("model.embed.weight"), d.f32);
  EXPECT_EQ(to_f32("half"), (std::vector<float>{1.0f, -2.0f, 0.5f}));
  EXPECT_EQ(to_f32("brain"), (std::vector<float>{1.0f, 3.0f}));
  EXPECT_EQ(to_f32("ids"), (std::vector<float>{-5.0f, 1099511627776.0f}));
  EXPECT_EQ(to_f32("mask"), (std::vector<float>{1.0f, 0.0f}));
  EXPECT_TRUE(to_f32("empty").empty());

  // overwrite in place: the new content replaces the old atomically
  sllm::io::write_safetensors(path, {tensors[1]});
  auto g = SafetensorsFile::open(path);
  EXPECT_EQ(g.tensors().size(), 1u);
  EXPECT_TRUE(g.metadata().empty());
  EXPECT_EQ(sllm::io::dtype_name(DType::bf16), "BF16");
  EXPECT_EQ(sllm::io::dtype_size(DType::i64), 8u);
  EXPECT_EQ(sllm::io::dtype_size(DType::gguf_quant), 0u);
}

TEST(SafetensorsWrite, InvalidInputIsRejectedWithoutLeavingFiles) {
  std::vector<float> v(4, 1.0f);
  const fs::path dir = test_dir() / "invalid";
  fs::create_directories(dir);
  const std::string path = (dir / "x.safetensors").string();
  auto expect_fail = [&](std::vector<TensorToWrite> ts, const std::string& sub) {
    try {
      sllm::io::write_safetensors(path, ts);
      ADD_FAILURE() << "expected failure: " << sub;
    } catch (const sllm::Error& e) {
      EXPECT_NE(std::string(e.what()).find(sub), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path));
    EXPECT_FALSE(has_tmp_files(dir));
  };
  expect_fail({{"a", DType::f32, {4}, v.data(), 12}}, "has 12 bytes, expected 16");
  expect_fail({{"a", DType::f32, {4}, v.data(), 16}, {"a", DType::f32, {4}, v.data(), 16}},
              "duplicate");
  expect_fail({{"", DType::f32, {4}, v.data(), 16}}, "empty name");
  expect_fail({{"__metadata__", DType::f32, {4}, v.data(), 16}}, "__metadata__");
  expect_fail({{"q", DType::gguf_quant, {4}, v.data(), 16}}, "GGUF_QUANT");
  expect_fail({{"n", DType::f32, {-1}, v.data(), 16}}, "negative");
  expect_fail({{"bad\xff", DType::f32, {4}, v.data(), 16}}, "UTF-8");
}

TEST(SafetensorsWrite, IoFailuresThrowAndRemoveTempFile) {
  std::vector<float> v(1 << 18, 2.0f);  // 1 MiB
  // missing parent directory
  const std::string nodir = (test_dir() / "no" / "such" / "dir" / "m.safetensors").string();
  try {
    sllm::io::write_safetensors(nodir, {{"w", DType::f32, {1 << 18}, v.data(), v.size() * 4}});
    ADD_FAILURE() << "write into a missing directory succeeded";
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find(nodir), std::string::npos) << e.what();
  }

  // "disk full": cap the file size so write() fails with EFBIG part-way through
  const fs::path dir = test_dir() / "full";
  fs::create_directories(dir);
  const std::string path = (dir / "m.safetensors").string();
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string msg;
  try {
    sllm::io::write_safetensors(path, {{"w", DType::f32, {1 << 18}, v.data(), v.size() * 4}});
  } catch (const sllm::Error& e) {
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_FALSE(msg.empty()) << "write past RLIMIT_FSIZE succeeded";
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(has_tmp_files(dir));

  // target is an existing directory: rename fails, temp file removed
  const fs::path target = dir / "adir";
  fs::create_directories(target / "inner");
  EXPECT_THROW(sllm::io::write_safetensors(target.string(), {{"w", DType::f32, {1}, v.data(), 4}}),
               sllm::Error);
  EXPECT_FALSE(has_tmp_files(dir));
}

TEST(SafetensorsAtomicWrite, WriteAndReadFiles) {
  const std::string p = (test_dir() / "a.txt").string();
  sllm::io::write_file_atomic(p, "hello\n");
  EXPECT_EQ(sllm::io::read_file(p), "hello\n");
  sllm::io::write_file_atomic(p, std::string("a\0b", 3));
  EXPECT_EQ(sllm::io::read_file(p), std::string("a\0b", 3));
  sllm::io::write_file_atomic(p, "");
  EXPECT_EQ(sllm::io::read_file(p), "");
  EXPECT_FALSE(has_tmp_files(test_dir()));
  const std::string big(3 << 20, 'z');
  sllm::io::write_file_atomic(p, big);
  EXPECT_EQ(sllm::io::read_file(p), big);

  const std::string missing = (test_dir() / "missing.txt").string();
  try {
    sllm::io::read_file(missing);
    ADD_FAILURE();
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  EXPECT_THROW(sllm::io::read_file(test_dir().string()), sllm::Error);
  const std::string bad = (test_dir() / "nope" / "x.txt").string();
  try {
    sllm::io::write_file_atomic(bad, "x");
    ADD_FAILURE();
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- HF directories

TEST(SafetensorsSet, ShardedDirectoryWithIndex) {
  const fs::path dir = test_dir() / "sharded";
  fs::create_directories(dir);
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6}, c = {7};
  sllm::io::write_safetensors((dir / "model-00001-of-00002.safetensors").string(),
                              {{"model.a", DType::f32, {2, 2}, a.data(), 16},
                               {"model.b", DType::f32, {2}, b.data(), 8},
                               {"unlisted", DType::f32, {1}, c.data(), 4}});
  sllm::io::write_safetensors((dir / "model-00002-of-00002.safetensors").string(),
                              {{"lm_head.weight", DType::f32, {1, 1}, c.data(), 4}});
  nlohmann::json idx = {{"metadata", {{"total_size", 28}}},
                        {"weight_map",
                         {{"model.a", "model-00001-of-00002.safetensors"},
                          {"model.b", "model-00001-of-00002.safetensors"},
                          {"lm_head.weight", "model-00002-of-00002.safetensors"}}}};
  sllm::io::write_file_atomic((dir / "model.safetensors.index.json").string(), idx.dump(2));

  auto set = SafetensorsSet::open_dir(dir.string());
  EXPECT_EQ(set.files().size(), 2u);
  const auto* t = set.find("lm_head.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(std::memcmp(t->data, c.data(), 4), 0);
  ASSERT_NE(set.find("model.a"), nullptr);
  EXPECT_EQ(std::memcmp(set.find("model.a")->data, a.data(), 16), 0);
  EXPECT_EQ(set.find("unlisted"), nullptr);  // the weight_map is authoritative
  EXPECT_EQ(set.find("absent"), nullptr);
  const auto all = set.all();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0]->name, "lm_head.weight");  // sorted by name
  // moving the set keeps the views valid
  SafetensorsSet moved = std::move(set);
  EXPECT_EQ(std::memcmp(moved.find("model.b")->data, b.data(), 8), 0);

  // an index pointing at a tensor its shard does not have
  idx["weight_map"]["ghost"] = "model-00002-of-00002.safetensors";
  sllm::io::write_file_atomic((dir / "model.safetensors.index.json").string(), idx.dump());
  try {
    SafetensorsSet::open_dir(dir.string());
    ADD_FAILURE();
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("ghost"), std::string::npos) << e.what();
  }
  // a missing shard names the file
  idx["weight_map"]["ghost"] = "model-00003-of-00002.safetensors";
  sllm::io::write_file_atomic((dir / "model.safetensors.index.json").string(), idx.dump());
  try {
    SafetensorsSet::open_dir(dir.string());
    ADD_FAILURE();
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model-00003-of-00002.safetensors"), std::string::npos)
        << e.what();
  }
  // shard paths escaping the directory
  idx["weight_map"]["ghost"] = "../evil.safetensors";
  sllm::io::write_file_atomic((dir / "model.safetensors.index.json").string(), idx.dump());
  EXPECT_THROW(SafetensorsSet::open_dir(dir.string()), sllm::Error);
  idx["weight_map"]["ghost"] = "/etc/passwd";
  sllm::io::write_file_atomic((dir / "model.safetensors.index.json").string(), idx.dump());
  EXPECT_THROW(SafetensorsSet::open_dir(dir.string()), sllm::Error);
  // invalid JSON / missing weight_map
  sllm::io::write_file_atomic((dir / "model.safetensors.index.json").string(),
                              "{\"weight_map\": [");
  try {
    SafetensorsSet::open_dir(dir.string());
    ADD_FAILURE();
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors.index.json"), std::string::npos)
        << e.what();
  }
  sllm::io::write_file_atomic((dir / "model.safetensors.index.json").string(),
                              "{\"metadata\": {}}");
  EXPECT_THROW(SafetensorsSet::open_dir(dir.string()), sllm::Error);
  sllm::io::write_file_atomic((dir / "model.safetensors.index.json").string(),
                              "{\"weight_map\": {\"x\": 3}}");
  EXPECT_THROW(SafetensorsSet::open_dir(dir.string()), sllm::Error);
}

TEST(SafetensorsSet, SingleFileAndMissingFiles) {
  const fs::path dir = test_dir() / "single";
  fs::create_directories(dir);
  try {
    SafetensorsSet::open_dir(dir.string());
    ADD_FAILURE();
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
  EXPECT_THROW(SafetensorsSet::open_dir((dir / "nonexistent").string()), sllm::Error);
  std::vector<uint16_t> h = {0x3c00, 0x4000};
  sllm::io::write_safetensors((dir / "model.safetensors").string(),
                              {{"w", DType::f16, {2}, h.data(), 4}});
  auto set = SafetensorsSet::open_dir(dir.string());
  ASSERT_NE(set.find("w"), nullptr);
  EXPECT_EQ(set.find("w")->dtype, DType::f16);
  EXPECT_EQ(set.all().size(), 1u);
}

// ---------------------------------------------------------------- malformed files

TEST(SafetensorsRead, MalformedFilesGiveClearErrors) {
  const std::string data16(16, '\x01');
  struct Case {
    const char* name;
    std::string bytes;
    std::vector<std::string> expect;
  };
  auto hdr = [](const std::string& entries) { return "{" + entries + "}"; };
  std::vector<Case> cases = {
      {"short", std::string("\x05\0\0", 3), {"truncated", "8 bytes"}},
      {"header_past_end", make_file("{}", "").substr(0, 8) + "{", {"truncated", "header needs 2"}},
      {"huge_header_len",
       std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10),
       {"truncated", "header"}},
      {"not_json", make_file("{not json}", ""), {"invalid JSON header"}},
      {"not_object", make_file("[1, 2]", ""), {"not a JSON object"}},
      {"empty_header", make_file("", ""), {"not a JSON object"}},
      {"bad_utf8", make_file("{\"a\xff\": {}}", ""), {"invalid JSON header"}},
      {"deep",
       make_file("{\"a\":" + std::string(200, '[') + std::string(200, ']') + "}", ""),
       {"nested"}},
      {"entry_not_object", make_file(hdr("\"w\": 3"), data16), {"'w'", "expected an object"}},
      {"no_dtype",
       make_file(hdr("\"w\": {\"shape\": [4], \"data_offsets\": [0, 16]}"), data16),
       {"'w'", "dtype"}},
      {"unknown_dtype",
       make_file(hdr("\"w\": {\"dtype\": \"F17\", \"shape\": [4], \"data_offsets\": [0, 16]}"),
                 data16),
       {"'w'", "unknown dtype 'F17'"}},
      {"no_shape",
       make_file(hdr("\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 16]}"), data16),
       {"'w'", "shape"}},
      {"negative_shape",
       make_file(hdr("\"w\": {\"dtype\": \"F32\", \"shape\": [-4], \"data_offsets\": [0, 16]}"),
                 data16),
       {"'w'", "non-negative integer"}},
      {"float_shape",
       make_file(hdr("\"w\": {\"dtype\": \"F32\", \"shape\": [4.0], \"data_offsets\": [0, 16]}"),
                 data16),
       {"'w'", "non-negative integer"}},
      {"shape_overflow",
       make_file(hdr("\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
                     "\"data_offsets\": [0, 16]}"),
                 data16),
       {"'w'", "overflows"}},
      {"shape_mismatch",
       make_file(hdr("\"w\": {\"dtype\": \"F32\", \"shape\": [5], \"data_offsets\": [0, 16]}"),
                 data16),
       {"'w'", "needs 20 bytes", "span 16"}},
      {"bytes_overflow",
       make_file(hdr("\"w\": {\"dtype\": \"F64\", \"shape\": [4611686018427387904], "
                     "\"data_offsets\": [0, 16]}"),
                 data16),
       {"'w'", "too many"}},
      {"offsets_past_end",
       make_file(hdr("\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}"),
                 data16),
       {"truncated", "'w'", "[8, 24)", "has 16 bytes"}},
      {"offsets_huge",
       make_file(hdr("\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": "
                     "[18446744073709551615, 0]}"),
                 data16),
       {"'w'", "reversed"}},
      {"offsets_wrong_arity",
       make_file(hdr("\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0]}"), data16),
       {"'w'", "data_offsets"}},
      {"offsets_negative",
       make_file(hdr("\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [-16, 0]}"),
                 data16),
       {"'w'", "data_offsets"}},
      {"overlap",
       make_file(hdr("\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                     "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}"),
                 data16),
       {"'a'", "overlaps tensor 'b'"}},
      {"metadata_not_object",
       make_file(hdr("\"__metadata__\": [1]"), ""),
       {"__metadata__", "expected an object"}},
      {"metadata_not_string",
       make_file(hdr("\"__metadata__\": {\"k\": 1}"), ""),
       {"__metadata__", "'k'", "expected a string"}},
  };
  const fs::path dir = test_dir() / "bad";
  fs::create_directories(dir);
  for (const auto& c : cases) {
    const std::string path = write_raw(dir / (std::string(c.name) + ".safetensors"), c.bytes);
    const std::string msg = open_error(path);
    ASSERT_FALSE(msg.empty()) << c.name << " opened without error";
    EXPECT_NE(msg.find(path), std::string::npos) << c.name << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << c.name << ": " << msg;
    for (const auto& sub : c.expect)
      EXPECT_NE(msg.find(sub), std::string::npos) << c.name << ": " << msg;
  }
  // valid edge cases: empty header object, gaps between tensors, trailing spaces
  EXPECT_EQ(open_error(write_raw(dir / "empty_ok.safetensors", make_file("{}      ", ""))), "");
  EXPECT_EQ(
      open_error(write_raw(
          dir / "gap_ok.safetensors",
          make_file(hdr("\"w\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [4, 6]}"),
                    data16))),
      "");
  // missing / empty files name the path
  const std::string missing = (dir / "missing.safetensors").string();
  EXPECT_NE(open_error(missing).find(missing), std::string::npos);
  const std::string empty = write_raw(dir / "empty.safetensors", "");
  EXPECT_NE(open_error(empty).find("empty"), std::string::npos);
}

// ---------------------------------------------------------------- corruption fuzzing

namespace {
void open_and_exercise(const std::string& path) {
  auto f = SafetensorsFile::open(path);
  for (const auto& t : f.tensors()) {
    if (sllm::io::dtype_size(t.dtype) == 0 || t.dtype == DType::f8_e4m3 ||
        t.dtype == DType::f8_e5m2)
      continue;
    std::vector<float> out(static_cast<size_t>(t.numel()));
    sllm::io::dequantize_to_f32(t, out.data());
  }
}
}  // namespace

TEST(SafetensorsFuzz, TruncationAndByteFlipsNeverCrash) {
  Data d;
  const fs::path dir = test_dir() / "fuzz";
  fs::create_directories(dir);
  const std::string good_path = (dir / "good.safetensors").string();
  sllm::io::write_safetensors(good_path, sample_tensors(d), {{"format", "pt"}});
  const std::string good = slurp(good_path);
  ASSERT_NO_THROW(open_and_exercise(good_path));

  const std::string path = (dir / "f.safetensors").string();
  for (size_t n = 0; n < good.size(); ++n) {
    write_raw(path, good.substr(0, n));
    try {
      open_and_exercise(path);
      ADD_FAILURE() << "truncated to " << n << " of " << good.size() << " bytes but opened";
    } catch (const sllm::Error&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "truncated to " << n << ": non-sllm exception: " << e.what();
    }
  }

  std::mt19937_64 rng(42);
  int opened = 0, failed = 0;
  for (int it = 0; it < 2000; ++it) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) {
      const size_t pos = rng() % bad.size();
      switch (rng() % 4) {
        case 0:
          bad[pos] = static_cast<char>(rng());
          break;
        case 1:
          bad[pos] = static_cast<char>(bad[pos] ^ (1 << (rng() % 8)));
          break;
        case 2:
          bad[pos] = "{}[]\",:0123456789-e "[rng() % 20];
          break;  // JSON-ish damage
        default: {
          const uint64_t v = rng() % 2 ? ~0ull : (1ull << (rng() % 64));
          std::memcpy(&bad[pos], &v, std::min<size_t>(8, bad.size() - pos));
        }
      }
    }
    write_raw(path, bad);
    try {
      open_and_exercise(path);
      ++opened;
    } catch (const sllm::Error& e) {
      ++failed;
      ASSERT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << it << ": non-sllm exception: " << e.what();
    }
  }
  EXPECT_GT(failed, 0);
  EXPECT_GT(opened, 0);
}
