// GGUF reader + block dequantizers: small files built in the test with independently computed
// expected values, exact error messages for malformed inputs, and corruption fuzzing
// (truncation at every byte, random byte flips) that must end in sllm::Error, never a crash.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "kernels/cpu/gguf_dequant.h"

namespace fs = std::filesystem;
using sllm::io::DType;
using sllm::io::GgufFile;
using sllm::io::TensorView;

namespace {

// ---------------------------------------------------------------- helpers

fs::path test_dir() {
  const fs::path d = fs::temp_directory_path() / ("sllm_test_gguf_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// Removes this process's scratch directory after all tests.
class GgufTmpCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(fs::temp_directory_path() / ("sllm_test_gguf_" + std::to_string(::getpid())),
                   ec);
  }
};
[[maybe_unused]] ::testing::Environment* const kGgufCleanup =
    ::testing::AddGlobalTestEnvironment(new GgufTmpCleanup);

std::string write_tmp(const std::string& name, const std::string& bytes) {
  const fs::path p = test_dir() / name;
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  return p.string();
}

// The sllm::Error message of opening `path`, or "" if it opened.
std::string open_error(const std::string& path) {
  try {
    GgufFile::open(path);
  } catch (const sllm::Error& e) {
    return e.what();
  }
  return "";
}

// Exact float -> IEEE half bits, for values the test picks to be representable (normals only).
uint16_t half_bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  const uint32_t sign = (b >> 16) & 0x8000u;
  if ((b & 0x7fffffffu) == 0) return static_cast<uint16_t>(sign);
  const int exp = static_cast<int>((b >> 23) & 0xff) - 127 + 15;
  const uint32_t mant = b & 0x7fffffu;
  EXPECT_TRUE(exp > 0 && exp < 31 && (mant & 0x1fffu) == 0) << "not exactly representable: " << v;
  return static_cast<uint16_t>(sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13));
}

template <class T>
void put(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}
void put_str(std::string& s, const std::string& v) {
  put<uint64_t>(s, v.size());
  s += v;
}

enum VT : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32V, BOOL, STR, ARR, U64, I64, F64V };

// Minimal GGUF writer for tests.
struct GgufBuilder {
  uint32_t version = 3;
  size_t alignment = 32;
  std::string kv;
  uint64_t n_kv = 0;
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::string data;
  };
  std::vector<Tensor> tensors;

  template <class T>
  GgufBuilder& scalar(const std::string& key, uint32_t vt, T v) {
    put_str(kv, key);
    put<uint32_t>(kv, vt);
    put<T>(kv, v);
    ++n_kv;
    return *this;
  }
  GgufBuilder& str(const std::string& key, const std::string& v) {
    put_str(kv, key);
    put<uint32_t>(kv, STR);
    put_str(kv, v);
    ++n_kv;
    return *this;
  }
  template <class T>
  GgufBuilder& array(const std::string& key, uint32_t et, const std::vector<T>& v) {
    put_str(kv, key);
    put<uint32_t>(kv, ARR);
    put<uint32_t>(kv, et);
    put<uint64_t>(kv, v.size());
    for (const auto& x : v) put<T>(kv, x);
    ++n_kv;
    return *this;
  }
  GgufBuilder& str_array(const std::string& key, const std::vector<std::string>& v) {
    put_str(kv, key);
    put<uint32_t>(kv, ARR);
    put<uint32_t>(kv, STR);
    put<uint64_t>(kv, v.size());
    for (const auto& x : v) put_str(kv, x);
    ++n_kv;
    return *this;
  }
  GgufBuilder& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                      std::string data) {
    tensors.push_back({name, std::move(ne), type, std::move(data)});
    return *this;
  }

  std::string build() const {
    std::string s = "GGUF";
    put<uint32_t>(s, version);
    put<uint64_t>(s, tensors.size());
    put<uint64_t>(s, n_kv);
    s += kv;
    uint64_t off = 0;
    std::vector<uint64_t> offs;
    for (const auto& t : tensors) {
      put_str(s, t.name);
      put<uint32_t>(s, static_cast<uint32_t>(t.ne.size()));
      for (auto d : t.ne) put<uint64_t>(s, d);
      put<uint32_t>(s, t.type);
      put<uint64_t>(s, off);
      offs.push_back(off);
      off += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    s.append((alignment - s.size() % alignment) % alignment, '\0');
    for (size_t i = 0; i < tensors.size(); ++i) {
      s += tensors[i].data;
      if (i + 1 < tensors.size()) s.append((alignment - s.size() % alignment) % alignment, '\0');
    }
    return s;
  }
};

std::string bytes_of(const void* p, size_t n) {
  return std::string(static_cast<const char*>(p), n);
}

// ---------------------------------------------------------------- reference quantizers
// Each builds random blocks with exactly representable scales and returns the packed bytes;
// `expect` receives the value of every element computed per element from the definition.

constexpr float kScales[] = {0.5f, 0.25f, -0.125f, 0.0625f, 1.5f, -2.0f, 0.375f, 3.0f};

std::string make_q4_0(int blocks, std::mt19937& rng, std::vector<float>& expect) {
  std::string out;
  for (int b = 0; b < blocks; ++b) {
    const float d = kScales[rng() % 8];
    int q[32];
    for (int& x : q) x = static_cast<int>(rng() % 16);
    put<uint16_t>(out, half_bits(d));
    for (int j = 0; j < 16; ++j) out += static_cast<char>(q[j] | (q[j + 16] << 4));
    for (int j = 0; j < 32; ++j) expect.push_back(d * static_cast<float>(q[j] - 8));
  }
  return out;
}

std::string make_q4_1(int blocks, std::mt19937& rng, std::vector<float>& expect) {
  std::string out;
  for (int b = 0; b < blocks; ++b) {
    const float d = kScales[rng() % 8], m = kScales[rng() % 8];
    int q[32];
    for (int& x : q) x = static_cast<int>(rng() % 16);
    put<uint16_t>(out, half_bits(d));
    put<uint16_t>(out, half_bits(m));
    for (int j = 0; j < 16; ++j) out += static_cast<char>(q[j] | (q[j + 16] << 4));
    for (int j = 0; j < 32; ++j) expect.push_back(d * static_cast<float>(q[j]) + m);
  }
  return out;
}

std::string make_q5(bool with_min, int blocks, std::mt19937& rng, std::vector<float>& expect) {
  std::string out;
  for (int b = 0; b < blocks; ++b) {
    const float d = kScales[rng() % 8], m = kScales[rng() % 8];
    int q[32];  // 5-bit values
    for (int& x : q) x = static_cast<int>(rng() % 32);
    put<uint16_t>(out, half_bits(d));
    if (with_min) put<uint16_t>(out, half_bits(m));
    uint32_t qh = 0;
    for (int j = 0; j < 32; ++j) qh |= static_cast<uint32_t>(q[j] >> 4) << j;
    put<uint32_t>(out, qh);
    for (int j = 0; j < 16; ++j) out += static_cast<char>((q[j] & 15) | ((q[j + 16] & 15) << 4));
    for (int j = 0; j < 32; ++j)
      expect.push_back(with_min ? d * static_cast<float>(q[j]) + m
                                : d * static_cast<float>(q[j] - 16));
  }
  return out;
}

std::string make_q8_0(int blocks, std::mt19937& rng, std::vector<float>& expect) {
  std::string out;
  for (int b = 0; b < blocks; ++b) {
    const float d = kScales[rng() % 8];
    put<uint16_t>(out, half_bits(d));
    for (int j = 0; j < 32; ++j) {
      const int8_t q = static_cast<int8_t>(static_cast<int>(rng() % 256) - 128);
      out += static_cast<char>(q);
      expect.push_back(d * static_cast<float>(q));
    }
  }
  return out;
}

// Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scale and min packed in 12 bytes.
void pack_k4_scales(const int sc[8], const int mn[8], uint8_t out[12]) {
  std::memset(out, 0, 12);
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
}

std::string make_qk(int bits, int blocks, std::mt19937& rng, std::vector<float>& expect) {
  std::string out;
  for (int b = 0; b < blocks; ++b) {
    const float d = kScales[rng() % 8] / 64, dmin = kScales[rng() % 8] / 64;
    int sc[8], mn[8], q[256];
    for (int j = 0; j < 8; ++j)
      sc[j] = static_cast<int>(rng() % 64), mn[j] = static_cast<int>(rng() % 64);
    for (int& x : q) x = static_cast<int>(rng() % (bits == 4 ? 16 : 32));
    uint8_t s12[12];
    pack_k4_scales(sc, mn, s12);
    put<uint16_t>(out, half_bits(d));
    put<uint16_t>(out, half_bits(dmin));
    out.append(reinterpret_cast<const char*>(s12), 12);
    // element i: chunk c = i / 64 uses qs[c*32 + l]; low nibble for i%64 < 32, high otherwise
    if (bits == 5) {
      uint8_t qh[32] = {};
      for (int i = 0; i < 256; ++i)
        if (q[i] & 16) qh[i % 32] |= static_cast<uint8_t>(1u << (i / 32));
      out.append(reinterpret_cast<const char*>(qh), 32);
    }
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        out += static_cast<char>((q[c * 64 + l] & 15) | ((q[c * 64 + 32 + l] & 15) << 4));
    for (int i = 0; i < 256; ++i) {
      const int sub = i / 32;
      expect.push_back(d * static_cast<float>(sc[sub]) * static_cast<float>(q[i]) -
                       dmin * static_cast<float>(mn[sub]));
    }
  }
  return out;
}

std::string make_q6_k(int blocks, std::mt19937& rng, std::vector<float>& expect) {
  std::string out;
  for (int b = 0; b < blocks; ++b) {
    const float d = kScales[rng() % 8] / 64;
    int8_t sc[16];
    int q[256];  // 6-bit unsigned, value = q - 32
    for (auto& s : sc) s = static_cast<int8_t>(static_cast<int>(rng() % 256) - 128);
    for (int& x : q) x = static_cast<int>(rng() % 64);
    uint8_t ql[128] = {}, qh[64] = {};
    // element i: half h = i/128, r = i%128, group g = r/32 (0..3), l = r%32
    for (int i = 0; i < 256; ++i) {
      const int h = i / 128, g = (i % 128) / 32, l = i % 32;
      const int lo_idx = h * 64 + l + (g & 1) * 32;
      ql[lo_idx] |= static_cast<uint8_t>((q[i] & 15) << (g >= 2 ? 4 : 0));
      qh[h * 32 + l] |= static_cast<uint8_t>((q[i] >> 4) << (2 * g));
    }
    out.append(reinterpret_cast<const char*>(ql), 128);
    out.append(reinterpret_cast<const char*>(qh), 64);
    out.append(reinterpret_cast<const char*>(sc), 16);
    put<uint16_t>(out, half_bits(d));
    for (int i = 0; i < 256; ++i)
      expect.push_back(d * static_cast<float>(sc[i / 16]) * static_cast<float>(q[i] - 32));
  }
  return out;
}

void expect_floats_eq(const std::vector<float>& got, const std::vector<float>& want,
                      const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_FLOAT_EQ(got[i], want[i]) << what << " element " << i;
}

std::vector<float> deq(const TensorView& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  sllm::io::dequantize_to_f32(t, out.data());
  return out;
}

// A small valid file with metadata of every type and tensors of several types.
std::string sample_file() {
  std::mt19937 rng(7);
  std::vector<float> e;
  GgufBuilder b;
  b.str("general.architecture", "llama")
      .scalar<uint32_t>("llama.block_count", U32, 2)
      .scalar<float>("eps", F32V, 1e-5f)
      .scalar<uint8_t>("flag", BOOL, 1)
      .str_array("tokens", {"a", "bc", ""})
      .array<int32_t>("types", I32, {1, 2, 3});
  std::vector<float> f32 = {1, 2, 3, 4, 5, 6};
  b.tensor("w.f32", {3, 2}, 0, bytes_of(f32.data(), 24));
  b.tensor("w.q4_0", {32, 2}, 2, make_q4_0(2, rng, e));
  b.tensor("w.q4_1", {32}, 3, make_q4_1(1, rng, e));
  b.tensor("w.q8_0", {32}, 8, make_q8_0(1, rng, e));
  return b.build();
}

}  // namespace

// ---------------------------------------------------------------- kernels

TEST(GgufDequant, HalfToFloatAllValues) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = sllm::kernels::cpu::fp16_to_fp32(static_cast<uint16_t>(h));
    const int sign = (h & 0x8000) ? -1 : 1;
    const int exp = (h >> 10) & 31, mant = h & 1023;
    if (exp == 31) {
      if (mant == 0)
        ASSERT_TRUE(std::isinf(got) && (got < 0) == (sign < 0)) << h;
      else
        ASSERT_TRUE(std::isnan(got)) << h;
      continue;
    }
    const double want = exp == 0 ? sign * std::ldexp(static_cast<double>(mant), -24)
                                 : sign * std::ldexp(1.0 + mant / 1024.0, exp - 15);
    ASSERT_EQ(static_cast<double>(got), want) << "half bits " << h;
    ASSERT_EQ(std::signbit(got), sign < 0) << h;
  }
  std::vector<uint16_t> src = {0x3c00, 0xc000, 0x0001, 0x7c00};
  std::vector<float> dst(4);
  sllm::kernels::cpu::f16_to_f32(src.data(), dst.data(), 4);
  EXPECT_EQ(dst[0], 1.0f);
  EXPECT_EQ(dst[1], -2.0f);
  EXPECT_EQ(dst[2], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(dst[3]));
}

TEST(GgufDequant, Bf16ToFloat) {
  std::vector<uint16_t> src = {0x3f80, 0xc040, 0x7f80, 0x0001, 0x7fc0};
  std::vector<float> dst(5);
  sllm::kernels::cpu::bf16_to_f32(src.data(), dst.data(), 5);
  EXPECT_EQ(dst[0], 1.0f);
  EXPECT_EQ(dst[1], -3.0f);
  EXPECT_TRUE(std::isinf(dst[2]));
  EXPECT_EQ(dst[3], std::ldexp(1.0f, -133));
  EXPECT_TRUE(std::isnan(dst[4]));
}

TEST(GgufDequant, BlockFormatsMatchReference) {
  namespace kc = sllm::kernels::cpu;
  std::mt19937 rng(1234);
  struct Case {
    const char* name;
    std::string bytes;
    std::vector<float> want;
    void (*fn)(const void*, float*, int64_t);
  };
  std::vector<Case> cases;
  auto add = [&](const char* name, auto make, void (*fn)(const void*, float*, int64_t)) {
    Case c{name, {}, {}, fn};
    c.bytes = make(c.want);
    cases.push_back(std::move(c));
  };
  add(
      "q4_0", [&](auto& w) { return make_q4_0(5, rng, w); }, kc::dequant_q4_0);
  add(
      "q4_1", [&](auto& w) { return make_q4_1(5, rng, w); }, kc::dequant_q4_1);
  add(
      "q5_0", [&](auto& w) { return make_q5(false, 5, rng, w); }, kc::dequant_q5_0);
  add(
      "q5_1", [&](auto& w) { return make_q5(true, 5, rng, w); }, kc::dequant_q5_1);
  add(
      "q8_0", [&](auto& w) { return make_q8_0(5, rng, w); }, kc::dequant_q8_0);
  add(
      "q4_k", [&](auto& w) { return make_qk(4, 3, rng, w); }, kc::dequant_q4_k);
  add(
      "q5_k", [&](auto& w) { return make_qk(5, 3, rng, w); }, kc::dequant_q5_k);
  add(
      "q6_k", [&](auto& w) { return make_q6_k(3, rng, w); }, kc::dequant_q6_k);
  for (const auto& c : cases) {
    // copy to an odd offset: kernels must not assume alignment
    std::string buf = "x" + c.bytes;
    std::vector<float> got(c.want.size());
    c.fn(buf.data() + 1, got.data(), static_cast<int64_t>(got.size()));
    expect_floats_eq(got, c.want, c.name);
  }
  // block byte sizes agree with the packers above
  EXPECT_EQ(cases[0].bytes.size(), 5u * kc::kQ4_0Bytes);
  EXPECT_EQ(cases[5].bytes.size(), 3u * kc::kQ4_KBytes);
  EXPECT_EQ(cases[6].bytes.size(), 3u * kc::kQ5_KBytes);
  EXPECT_EQ(cases[7].bytes.size(), 3u * kc::kQ6_KBytes);
}

// ---------------------------------------------------------------- reading

TEST(GgufReader, MetadataOfEveryType) {
  GgufBuilder b;
  b.scalar<uint8_t>("u8", U8, 200)
      .scalar<int8_t>("i8", I8, -100)
      .scalar<uint16_t>("u16", U16, 60000)
      .scalar<int16_t>("i16", I16, -30000)
      .scalar<uint32_t>("u32", U32, 4000000000u)
      .scalar<int32_t>("i32", I32, -2000000000)
      .scalar<float>("f32", F32V, 0.5f)
      .scalar<uint8_t>("bool", BOOL, 1)
      .str("str", "hello \xe2\x9c\x93")
      .scalar<uint64_t>("u64", U64, 18000000000000000000ull)
      .scalar<int64_t>("i64", I64, -9000000000000000000ll)
      .scalar<double>("f64", F64V, -1.25)
      .str_array("strs", {"<s>", "", "tok with space"})
      .array<float>("floats", F32V, {1.5f, -2.0f})
      .array<uint8_t>("bools", BOOL, {0, 1})
      .array<int64_t>("empty", I64, {})
      .scalar<uint32_t>("big_u64_ok", U32, 7);
  const auto path = write_tmp("meta.gguf", b.build());
  auto g = GgufFile::open(path);
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_TRUE(g.tensors().empty());
  const auto& m = g.metadata();
  EXPECT_EQ(m.size(), 17u);
  EXPECT_EQ(g.get_int("u8"), 200);
  EXPECT_EQ(g.get_int("i8"), -100);
  EXPECT_EQ(g.get_int("u16"), 60000);
  EXPECT_EQ(g.get_int("i16"), -30000);
  EXPECT_EQ(g.get_int("u32"), 4000000000ll);
  EXPECT_EQ(g.get_int("i32"), -2000000000);
  EXPECT_EQ(g.get_float("f32"), 0.5);
  EXPECT_EQ(m["bool"], true);
  EXPECT_EQ(g.get_string("str"), "hello \xe2\x9c\x93");
  EXPECT_EQ(m["u64"].get<uint64_t>(), 18000000000000000000ull);
  EXPECT_EQ(g.get_int("i64"), -9000000000000000000ll);
  EXPECT_EQ(g.get_float("f64"), -1.25);
  EXPECT_EQ(g.get_float("u32"), 4e9);  // integers are accepted as floats
  ASSERT_TRUE(m["strs"].is_array());
  EXPECT_EQ(m["strs"].size(), 3u);
  EXPECT_EQ(m["strs"][0], "<s>");
  EXPECT_EQ(m["strs"][1], "");
  EXPECT_EQ(m["strs"][2], "tok with space");
  EXPECT_EQ(m["floats"][1].get<double>(), -2.0);
  EXPECT_EQ(m["bools"][1], true);
  EXPECT_TRUE(m["empty"].is_array() && m["empty"].empty());
  EXPECT_EQ(g.value_type("strs"), sllm::io::GgufValueType::ARRAY);
  EXPECT_EQ(g.value_type("f32"), sllm::io::GgufValueType::FLOAT32);

  // typed getters: missing keys and wrong types name the key and the file
  auto err = [&](auto fn) -> std::string {
    try {
      fn();
    } catch (const sllm::Error& e) {
      return e.what();
    }
    return "";
  };
  std::string e = err([&] { g.get_string("nope"); });
  EXPECT_NE(e.find("'nope'"), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
  EXPECT_NE(e.find(path), std::string::npos) << e;
  e = err([&] { g.get_int("str"); });
  EXPECT_NE(e.find("'str'"), std::string::npos) << e;
  EXPECT_NE(e.find("expected an integer"), std::string::npos) << e;
  EXPECT_NE(err([&] { g.get_string("u8"); }), "");
  EXPECT_NE(err([&] { g.get_float("str"); }), "");
  EXPECT_NE(err([&] { g.get_int("f32"); }), "");
  EXPECT_NE(err([&] { g.get_int("u64"); }).find("does not fit"), std::string::npos);
  EXPECT_NE(err([&] { g.get_int("bool"); }), "");
  EXPECT_EQ(g.get_int_or("absent", 42), 42);
  EXPECT_EQ(g.get_float_or("absent", 2.5), 2.5);
  EXPECT_EQ(g.get_string_or("absent", "dflt"), "dflt");
  EXPECT_EQ(g.get_int_or("u8", 42), 200);
  EXPECT_NE(err([&] { g.get_int_or("str", 1); }), "");  // present but wrong type still throws
  EXPECT_TRUE(g.has("u8"));
  EXPECT_FALSE(g.has("absent"));
}

TEST(GgufReader, TensorsOfEachTypeDequantize) {
  std::mt19937 rng(99);
  std::vector<float> f32 = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, -7.0f};
  // F16 values including a subnormal, -0, inf, and NaN
  std::vector<uint16_t> f16 = {0x3c00, 0xbc00, 0x0001, 0x8000, 0x7c00, 0x7e00, 0x3555, 0x4248};
  std::vector<uint16_t> bf16 = {0x3f80, 0xc2f7, 0x0000, 0x4049};
  std::vector<float> e_q40, e_q41, e_q80, e_q50, e_q51, e_q4k, e_q6k;
  GgufBuilder b;
  b.scalar<uint32_t>("general.alignment", U32, 64);
  b.alignment = 64;
  b.tensor("f32", {3, 2}, 0, bytes_of(f32.data(), f32.size() * 4));
  b.tensor("f16", {8}, 1, bytes_of(f16.data(), f16.size() * 2));
  b.tensor("bf16", {2, 2}, 30, bytes_of(bf16.data(), bf16.size() * 2));
  b.tensor("q4_0", {64, 3}, 2, make_q4_0(6, rng, e_q40));
  b.tensor("q4_1", {32, 2, 2}, 3, make_q4_1(4, rng, e_q41));
  b.tensor("q8_0", {96}, 8, make_q8_0(3, rng, e_q80));
  b.tensor("q5_0", {32}, 6, make_q5(false, 1, rng, e_q50));
  b.tensor("q5_1", {32}, 7, make_q5(true, 1, rng, e_q51));
  b.tensor("q4_k", {256, 2}, 12, make_qk(4, 2, rng, e_q4k));
  b.tensor("q6_k", {256}, 14, make_q6_k(1, rng, e_q6k));
  const auto path = write_tmp("tensors.gguf", b.build());
  auto g = GgufFile::open(path);
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.data_offset() % 64, 0u);
  ASSERT_EQ(g.tensors().size(), 10u);
  for (const auto& t : g.tensors()) {
    EXPECT_EQ((t.data - g.tensors()[0].data) % 64, 0) << t.name;
    EXPECT_EQ(g.find(t.name), &t);
  }
  EXPECT_EQ(g.find("missing"), nullptr);

  const TensorView* t = g.find("f32");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->dtype, DType::f32);
  EXPECT_EQ(t->ggml_type, 0u);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));  // ne reversed
  EXPECT_EQ(t->nbytes, 24u);
  expect_floats_eq(deq(*t), f32, "f32");

  t = g.find("f16");
  EXPECT_EQ(t->dtype, DType::f16);
  auto v = deq(*t);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], -1.0f);
  EXPECT_EQ(v[2], std::ldexp(1.0f, -24));
  EXPECT_TRUE(v[3] == 0.0f && std::signbit(v[3]));
  EXPECT_TRUE(std::isinf(v[4]) && v[4] > 0);
  EXPECT_TRUE(std::isnan(v[5]));
  EXPECT_FLOAT_EQ(v[6], 0.333251953125f);
  EXPECT_EQ(v[7], 3.140625f);

  t = g.find("bf16");
  EXPECT_EQ(t->dtype, DType::bf16);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 2}));
  v = deq(*t);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], -123.5f);
  EXPECT_EQ(v[2], 0.0f);
  EXPECT_EQ(v[3], 3.140625f);

  t = g.find("q4_0");
  EXPECT_EQ(t->dtype, DType::gguf_quant);
  EXPECT_EQ(t->ggml_type, 2u);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{3, 64}));
  EXPECT_EQ(t->nbytes, 6u * 18);
  expect_floats_eq(deq(*t), e_q40, "q4_0");
  t = g.find("q4_1");
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 2, 32}));
  EXPECT_EQ(t->nbytes, 4u * 20);
  expect_floats_eq(deq(*t), e_q41, "q4_1");
  expect_floats_eq(deq(*g.find("q8_0")), e_q80, "q8_0");
  expect_floats_eq(deq(*g.find("q5_0")), e_q50, "q5_0");
  expect_floats_eq(deq(*g.find("q5_1")), e_q51, "q5_1");
  expect_floats_eq(deq(*g.find("q4_k")), e_q4k, "q4_k");
  expect_floats_eq(deq(*g.find("q6_k")), e_q6k, "q6_k");

  EXPECT_EQ(sllm::io::ggml_type_name(3), "Q4_1");
  EXPECT_EQ(sllm::io::ggml_type_name(14), "Q6_K");
  EXPECT_EQ(sllm::io::ggml_type_name(30), "BF16");
  EXPECT_EQ(sllm::io::ggml_type_name(4), "type#4");
}

TEST(GgufReader, Version2AndCopies) {
  GgufBuilder b;
  b.version = 2;
  std::vector<float> f = {1, 2};
  b.str("k", "v").tensor("t", {2}, 0, bytes_of(f.data(), 8));
  auto g = GgufFile::open(write_tmp("v2.gguf", b.build()));
  EXPECT_EQ(g.version(), 2u);
  GgufFile copy = g;  // shares the mapping; views stay valid after the original goes away
  { GgufFile moved = std::move(g); }
  expect_floats_eq(deq(*copy.find("t")), f, "t");
}

TEST(GgufReader, UnsupportedDequantNamesTensorAndType) {
  GgufBuilder b;
  b.tensor("blk.0.odd", {256}, 16 /* IQ2_XXS */, std::string(66, '\0'));
  auto g = GgufFile::open(write_tmp("iq2.gguf", b.build()));
  const auto* t = g.find("blk.0.odd");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->nbytes, 66u);
  try {
    deq(*t);
    FAIL() << "expected an error";
  } catch (const sllm::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("blk.0.odd"), std::string::npos) << m;
    EXPECT_NE(m.find("IQ2_XXS"), std::string::npos) << m;
    EXPECT_NE(m.find("16"), std::string::npos) << m;
  }
  // a view whose byte count does not match its shape is rejected, not over-read
  TensorView bad = *t;
  bad.nbytes = 10;
  bad.ggml_type = 2;
  EXPECT_THROW(deq(bad), sllm::Error);
}

// ---------------------------------------------------------------- malformed files

namespace {
struct BadCase {
  const char* name;
  std::string bytes;
  std::vector<std::string> expect;  // substrings of the message
};

std::string header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  std::string s = "GGUF";
  put<uint32_t>(s, version);
  put<uint64_t>(s, n_tensors);
  put<uint64_t>(s, n_kv);
  return s;
}

std::string tensor_info(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                        uint64_t off) {
  std::string s;
  put_str(s, name);
  put<uint32_t>(s, static_cast<uint32_t>(ne.size()));
  for (auto d : ne) put<uint64_t>(s, d);
  put<uint32_t>(s, type);
  put<uint64_t>(s, off);
  return s;
}

std::string pad_to(std::string s, size_t a) {
  s.append((a - s.size() % a) % a, '\0');
  return s;
}
}  // namespace

TEST(GgufReader, MalformedFilesGiveClearErrors) {
  std::vector<BadCase> cases;
  cases.push_back({"magic", "GGML" + std::string(20, '\0'), {"not a GGUF file"}});
  cases.push_back({"tiny", "GG", {"not a GGUF file"}});
  cases.push_back({"v1", header(1, 0, 0), {"version 1", "2 and 3"}});
  cases.push_back({"v4", header(4, 0, 0), {"version 4"}});
  cases.push_back({"bigendian", header(0x03000000, 0, 0), {"big-endian"}});
  cases.push_back({"short_header",
                   std::string("GGUF\3\0\0\0\0\0", 10),
                   {"truncated", "header", "needs 8 bytes at offset 8"}});
  cases.push_back(
      {"huge_kv_count", header(3, 0, 1ull << 60), {"1152921504606846976 metadata entries"}});
  cases.push_back({"huge_tensor_count", header(3, ~0ull, 0), {"18446744073709551615 tensors"}});
  {
    std::string s = header(3, 0, 1);
    put<uint64_t>(s, 1ull << 62);  // key length
    s += std::string(16, 'k');
    cases.push_back(
        {"huge_key_len", s, {"truncated", "metadata entry 0", "4611686018427387904 bytes"}});
  }
  {
    std::string s = header(3, 0, 1);
    put_str(s, "key");
    put<uint32_t>(s, 99);
    s += std::string(16, '\0');
    cases.push_back({"unknown_value_type", s, {"corrupt", "'key'", "unknown value type 99"}});
  }
  {
    std::string s = header(3, 0, 1);
    put_str(s, "arr");
    put<uint32_t>(s, ARR);
    put<uint32_t>(s, 77);
    put<uint64_t>(s, 1);
    s += std::string(16, '\0');
    cases.push_back({"unknown_array_type", s, {"'arr'", "unknown element type 77"}});
  }
  {
    std::string s = header(3, 0, 1);
    put_str(s, "arr");
    put<uint32_t>(s, ARR);
    put<uint32_t>(s, ARR);
    put<uint64_t>(s, 0);
    cases.push_back({"nested_array", s, {"'arr'", "nested arrays"}});
  }
  {
    std::string s = header(3, 0, 1);
    put_str(s, "arr");
    put<uint32_t>(s, ARR);
    put<uint32_t>(s, U32);
    put<uint64_t>(s, 1ull << 61);
    s += std::string(16, '\0');
    cases.push_back({"huge_array", s, {"truncated", "'arr'", "2305843009213693952"}});
  }
  {
    std::string s = header(3, 0, 1);
    put_str(s, "strs");
    put<uint32_t>(s, ARR);
    put<uint32_t>(s, STR);
    put<uint64_t>(s, 2);
    put_str(s, "ok");
    put<uint64_t>(s, 1000);  // second string runs past the end
    s += "xy";
    cases.push_back({"array_string_past_end",
                     s,
                     {"truncated", "'strs'", "array element 1", "needs 1000 bytes"}});
  }
  {
    std::string s = header(3, 0, 1);
    put_str(s, "b");
    put<uint32_t>(s, BOOL);
    s += '\x07';
    cases.push_back({"bad_bool", s, {"'b'", "bool value 7"}});
  }
  {
    std::string s = header(3, 0, 2);
    put_str(s, "k");
    put<uint32_t>(s, U8);
    s += '\1';
    put_str(s, "k");
    put<uint32_t>(s, U8);
    s += '\2';
    cases.push_back({"duplicate_key", s, {"'k'", "duplicate key"}});
  }
  {
    std::string s = header(3, 0, 1);
    put_str(s, "general.alignment");
    put<uint32_t>(s, U32);
    put<uint32_t>(s, 48);
    cases.push_back({"alignment_not_pow2", s, {"general.alignment = 48", "power of two"}});
  }
  {
    std::string s = header(3, 0, 1);
    put_str(s, "general.alignment");
    put<uint32_t>(s, U32);
    put<uint32_t>(s, 0);
    cases.push_back({"alignment_zero", s, {"general.alignment = 0"}});
  }
  {
    std::string s = header(3, 0, 1);
    put_str(s, "general.alignment");
    put<uint32_t>(s, STR);
    put_str(s, "32");
    cases.push_back({"alignment_string", s, {"general.alignment", "expected an integer"}});
  }
  {
    std::string s = header(3, 1, 0) + tensor_info("blk.0.attn_q.weight", {4, 4}, 0, 0);
    s.resize(s.size() - 5);  // cut inside the offset field
    cases.push_back({"tensor_info_truncated",
                     s,
                     {"truncated", "tensor info 0 ('blk.0.attn_q.weight')", "needs", "file has"}});
  }
  {
    std::string s = header(3, 1, 0) + tensor_info("t", {1, 1, 1, 1, 1, 1, 1, 1, 1}, 0, 0) +
                    std::string(64, '\0');
    cases.push_back({"too_many_dims", s, {"'t'", "n_dims = 9"}});
  }
  {
    std::string s =
        pad_to(header(3, 1, 0) + tensor_info("t", {4, 0}, 0, 0), 32) + std::string(64, '\0');
    cases.push_back({"zero_dim", s, {"'t'", "dimension 1 is 0"}});
  }
  {
    std::string s = pad_to(header(3, 1, 0) + tensor_info("t", {1ull << 32, 1ull << 32}, 0, 0), 32) +
                    std::string(64, '\0');
    cases.push_back({"numel_overflow", s, {"'t'", "overflows"}});
  }
  {
    std::string s =
        pad_to(header(3, 1, 0) + tensor_info("t", {1ull << 62}, 0, 0), 32) + std::string(64, '\0');
    cases.push_back({"nbytes_overflow", s, {"'t'", "byte size overflows"}});
  }
  {
    std::string s =
        pad_to(header(3, 1, 0) + tensor_info("weird", {32}, 200, 0), 32) + std::string(64, '\0');
    cases.push_back({"unknown_tensor_type", s, {"'weird'", "unknown tensor type id 200"}});
  }
  {
    std::string s =
        pad_to(header(3, 1, 0) + tensor_info("q", {48}, 2, 0), 32) + std::string(64, '\0');
    cases.push_back({"row_not_multiple_of_block", s, {"'q'", "ne[0] = 48", "Q4_0 block size 32"}});
  }
  {
    std::string s =
        pad_to(header(3, 1, 0) + tensor_info("t", {16}, 0, 0), 32) + std::string(63, '\0');
    cases.push_back(
        {"data_past_end", s, {"truncated", "tensor 0 ('t'", "needs 64 bytes", "file has"}});
  }
  {
    std::string s =
        pad_to(header(3, 1, 0) + tensor_info("t", {4}, 0, 1ull << 63), 32) + std::string(64, '\0');
    cases.push_back({"offset_huge", s, {"truncated", "'t'"}});
  }
  {
    std::string s =
        pad_to(header(3, 1, 0) + tensor_info("t", {4}, 0, 8), 32) + std::string(64, '\0');
    cases.push_back(
        {"offset_misaligned", s, {"'t'", "offset 8 is not a multiple of the alignment 32"}});
  }
  {
    std::string s =
        pad_to(header(3, 2, 0) + tensor_info("a", {16}, 0, 0) + tensor_info("b", {16}, 0, 32), 32) +
        std::string(128, '\0');
    cases.push_back({"overlap", s, {"'a'", "overlaps 'b'"}});
  }
  {
    std::string s =
        pad_to(header(3, 2, 0) + tensor_info("a", {4}, 0, 0) + tensor_info("a", {4}, 0, 32), 32) +
        std::string(64, '\0');
    cases.push_back({"duplicate_tensor", s, {"'a'", "duplicate tensor name"}});
  }
  {
    // tensor infos end exactly at EOF: data section starts past the end
    std::string s = header(3, 1, 0) + tensor_info("t", {4}, 0, 0);
    cases.push_back({"no_data_section", s, {"truncated", "tensor data section"}});
  }

  for (const auto& c : cases) {
    const auto path = write_tmp(std::string("bad_") + c.name + ".gguf", c.bytes);
    const std::string msg = open_error(path);
    ASSERT_FALSE(msg.empty()) << c.name << " opened without error";
    EXPECT_NE(msg.find(path), std::string::npos) << c.name << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << c.name << ": " << msg;
    for (const auto& sub : c.expect)
      EXPECT_NE(msg.find(sub), std::string::npos) << c.name << ": " << msg;
  }
}

TEST(GgufReader, OpenFailuresNameThePath) {
  const std::string missing = (test_dir() / "does_not_exist.gguf").string();
  std::string m = open_error(missing);
  EXPECT_NE(m.find(missing), std::string::npos) << m;
  const std::string empty = write_tmp("empty.gguf", "");
  m = open_error(empty);
  EXPECT_NE(m.find("empty"), std::string::npos) << m;
  EXPECT_NE(m.find(empty), std::string::npos) << m;
  m = open_error(test_dir().string());
  EXPECT_NE(m.find("directory"), std::string::npos) << m;
}

// ---------------------------------------------------------------- corruption fuzzing

namespace {
// Opens and, if that worked, touches everything: metadata, every tensor's dequantized data.
void open_and_exercise(const std::string& path) {
  auto g = GgufFile::open(path);
  for (const auto& [k, v] : g.metadata().items()) (void)v.is_array();
  (void)g.get_string_or("general.architecture", "");
  for (const auto& t : g.tensors()) {
    ASSERT_NE(t.data, nullptr);
    if (!sllm::io::ggml_type_dequant_supported(t.ggml_type)) continue;
    std::vector<float> out(static_cast<size_t>(t.numel()));
    sllm::io::dequantize_to_f32(t, out.data());
  }
}
}  // namespace

TEST(GgufFuzz, TruncationAtEveryByteFails) {
  const std::string good = sample_file();
  ASSERT_NO_THROW(open_and_exercise(write_tmp("fuzz_full.gguf", good)));
  for (size_t n = 0; n < good.size(); ++n) {
    const auto path = write_tmp("fuzz_trunc.gguf", good.substr(0, n));
    try {
      open_and_exercise(path);
      ADD_FAILURE() << "truncated to " << n << " of " << good.size() << " bytes but opened";
    } catch (const sllm::Error&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "truncated to " << n << ": non-sllm exception: " << e.what();
    }
  }
}

TEST(GgufFuzz, RandomByteFlipsNeverCrash) {
  const std::string good = sample_file();
  std::mt19937_64 rng(20240601);
  int opened = 0, failed = 0;
  for (int it = 0; it < 2000; ++it) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t pos = rng() % bad.size();
      switch (rng() % 4) {
        case 0:
          bad[pos] = static_cast<char>(rng());
          break;  // random byte
        case 1:
          bad[pos] = static_cast<char>(bad[pos] ^ (1 << (rng() % 8)));
          break;   // bit flip
        case 2: {  // huge 64-bit value
          const uint64_t v = rng() % 2 ? ~0ull : (1ull << (rng() % 64));
          std::memcpy(&bad[pos], &v, std::min<size_t>(8, bad.size() - pos));
          break;
        }
        default:
          bad[pos] = 0;
          break;
      }
    }
    const auto path = write_tmp("fuzz_flip.gguf", bad);
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
  EXPECT_GT(opened, 0);  // flips inside tensor data keep the file valid
}
