// GGUF writing: the block quantizers (Q4_0, Q4_1, Q8_0, float16) against hand-worked blocks and
// the dequantizers, the writer read back by the reader, and a BPE tokenizer's GGUF vocabulary.
// Bit parity with the gguf Python package is tests/reference/check_gguf_quant.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_write.h"
#include "kernels/cpu/gguf_dequant.h"
#include "kernels/cpu/gguf_quant.h"
#include "tokenizer/bpe.h"
#include "tokenizer/gguf_vocab.h"

using namespace sllm;
namespace kc = sllm::kernels::cpu;
namespace fs = std::filesystem;

namespace {

fs::path tmp_dir() {
  const auto d = fs::temp_directory_path() / ("sllm_test_gguf_write_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::vector<float> round_trip(const std::vector<float>& x, int type) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> b(static_cast<size_t>(n / 32 * 34));
  std::vector<float> y(x.size());
  if (type == 2) kc::quant_q4_0(x.data(), b.data(), n), kc::dequant_q4_0(b.data(), y.data(), n);
  if (type == 3) kc::quant_q4_1(x.data(), b.data(), n), kc::dequant_q4_1(b.data(), y.data(), n);
  if (type == 8) kc::quant_q8_0(x.data(), b.data(), n), kc::dequant_q8_0(b.data(), y.data(), n);
  return y;
}

}  // namespace

TEST(GgufQuant, HalfRoundsToNearestEven) {
  EXPECT_EQ(kc::fp32_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(kc::fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(kc::fp32_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(kc::fp32_to_fp16(65519.99f), 0x7bff);
  EXPECT_EQ(kc::fp32_to_fp16(65520.0f), 0x7c00);  // the tie rounds to even: inf
  EXPECT_EQ(kc::fp32_to_fp16(1e9f), 0x7c00);
  EXPECT_EQ(kc::fp32_to_fp16(-INFINITY), 0xfc00);
  EXPECT_EQ(kc::fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(kc::fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even: 0
  EXPECT_EQ(kc::fp32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);  // tie to even: 2
  EXPECT_EQ(kc::fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(kc::fp32_to_fp16(1.0f + std::ldexp(3.0f, -11)), 0x3c02);
  EXPECT_EQ(kc::fp32_to_fp16(std::ldexp(1023.5f, -24)), 0x0400);  // rounds up into the normals
  EXPECT_EQ(kc::fp32_to_fp16(NAN) & 0x7e00, 0x7e00);
  for (uint32_t h = 0; h < 0x10000; ++h) {  // every half survives half -> float -> half
    const float f = kc::fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(kc::fp32_to_fp16(f), h) << std::hex << h;
  }
}

TEST(GgufQuant, HandWorkedBlocks) {
  std::vector<float> x(32);
  // Q4_0: the largest magnitude is -8, so d = 1 and integers in [-8, 7] come back exactly.
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j % 16 - 8);
  std::vector<uint8_t> b(34);
  kc::quant_q4_0(x.data(), b.data(), 32);
  EXPECT_EQ(b[0] | (b[1] << 8), 0x3c00);  // d = 1.0
  EXPECT_EQ(b[2], 0x00);                  // q = x + 8: 0 | 0 << 4
  EXPECT_EQ(b[17], 0xff);
  EXPECT_EQ(round_trip(x, 2), x);
  // Q4_1: 0..15 gives d = 1, m = 0.
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j % 16);
  kc::quant_q4_1(x.data(), b.data(), 32);
  EXPECT_EQ(b[0] | (b[1] << 8), 0x3c00);
  EXPECT_EQ(b[2] | (b[3] << 8), 0x0000);
  EXPECT_EQ(round_trip(x, 3), x);
  // Q8_0: a maximum of 127 gives d = 1.
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j * 8 - 127);
  kc::quant_q8_0(x.data(), b.data(), 32);
  EXPECT_EQ(b[0] | (b[1] << 8), 0x3c00);
  EXPECT_EQ(static_cast<int8_t>(b[2]), -127);
  EXPECT_EQ(round_trip(x, 8), x);
  // All-zero and constant blocks: no division by zero; a constant comes back (Q4_1 keeps it as m).
  for (int type : {2, 3, 8}) {
    EXPECT_EQ(round_trip(std::vector<float>(32, 0.0f), type), std::vector<float>(32, 0.0f));
    const auto c = round_trip(std::vector<float>(32, 0.75f), type);
    for (float v : c) EXPECT_NEAR(v, 0.75f, 1e-3f) << type;  // Q8_0: d is rounded to float16
  }
}

TEST(GgufQuant, ErrorWithinAStep) {
  std::mt19937 g(7);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> x(32 * 64);
  for (auto& v : x) v = nd(g);
  x[5] = 3.0f;  // one spiky block
  for (int type : {2, 3, 8}) {
    const auto y = round_trip(x, type);
    for (size_t blk = 0; blk < x.size() / 32; ++blk) {
      float lo = x[blk * 32], hi = lo, amax = 0;
      for (int j = 0; j < 32; ++j) {
        lo = std::min(lo, x[blk * 32 + j]);
        hi = std::max(hi, x[blk * 32 + j]);
        amax = std::max(amax, std::fabs(x[blk * 32 + j]));
      }
      const float step = type == 2 ? amax / 8 : type == 3 ? (hi - lo) / 15 : amax / 127;
      // Half a step (Q4_0: a whole one, its top level 7d clips +amax), plus the float16 rounding
      // of the scales.
      const float bound = (type == 2 ? 1.0f : 0.5f) * step * 1.01f + amax * 2e-3f;
      for (int j = 0; j < 32; ++j)
        ASSERT_LE(std::fabs(y[blk * 32 + j] - x[blk * 32 + j]), bound)
            << "type " << type << " block " << blk;
    }
  }
}

TEST(GgufWriter, ReadBackByTheReader) {
  io::GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_f32("llama.rope.freq_base", 100000.0f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set("x.i64", io::GgufValueType::INT64, int64_t{-5});
  w.set("x.strs", io::GgufValueType::ARRAY, std::vector<std::string>{"a b", "", "Ġc"},
        io::GgufValueType::STRING);
  w.set("x.i32s", io::GgufValueType::ARRAY, std::vector<int32_t>{1, -3, 6},
        io::GgufValueType::INT32);
  w.set("x.u32s", io::GgufValueType::ARRAY, nlohmann::json{1, 2},  // signed json, unsigned type
        io::GgufValueType::UINT32);
  EXPECT_THROW(w.set("x.neg", io::GgufValueType::UINT32, -1), Error);
  w.set_u32("llama.block_count", 30);  // replaced in place
  std::vector<float> norm = {1.0f, -2.5f, 3.25f};
  std::vector<float> mat(2 * 64);
  for (size_t i = 0; i < mat.size(); ++i) mat[i] = 0.01f * static_cast<float>(i) - 0.3f;
  std::string q(2 * 2 * 34, '\0');
  kc::quant_q8_0(mat.data(), q.data(), 128);
  w.add_tensor("norm", {3}, 0,
               [&] { return std::string(reinterpret_cast<char*>(norm.data()), 12); });
  w.add_tensor("mat", {2, 64}, 8, [&] { return q; });
  EXPECT_THROW(w.add_tensor("bad", {2, 33}, 8, [] { return std::string(); }), Error);
  const auto path = (tmp_dir() / "w.gguf").string();
  fs::remove(path);
  w.write(path);

  const auto f = io::GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 30);
  EXPECT_EQ(f.value_type("llama.block_count"), io::GgufValueType::UINT32);
  EXPECT_EQ(f.get_float("llama.rope.freq_base"), 100000.0);
  EXPECT_EQ(f.metadata()["tokenizer.ggml.add_bos_token"], true);
  EXPECT_EQ(f.get_int("x.i64"), -5);
  EXPECT_EQ(f.metadata()["x.strs"], (nlohmann::json{"a b", "", "Ġc"}));
  EXPECT_EQ(f.metadata()["x.i32s"], (nlohmann::json{1, -3, 6}));
  EXPECT_EQ(f.metadata()["x.u32s"], (nlohmann::json{1, 2}));
  ASSERT_EQ(f.tensors().size(), 2u);
  const auto* n = f.find("norm");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(std::memcmp(n->data, norm.data(), 12), 0);
  const auto* m = f.find("mat");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->shape, (std::vector<int64_t>{2, 64}));
  EXPECT_EQ(m->ggml_type, 8u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m->data), m->nbytes), q);
  std::vector<float> back(128);
  io::dequantize_to_f32(*m, back.data());
  for (size_t i = 0; i < back.size(); ++i)
    EXPECT_NEAR(back[i], mat[i], 0.005f);  // half a step of max|x| <= 0.97
  fs::remove_all(tmp_dir());
}

TEST(GgufWriter, FailuresNameTheFileAndLeaveNothing) {
  io::GgufWriter w;
  w.add_tensor("t", {32}, 0, [] { return std::string(7, '\0'); });  // wrong size
  const auto path = (tmp_dir() / "short.gguf").string();
  try {
    w.write(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'t'"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(tmp_dir()));  // the temp file is gone too
  io::GgufWriter ok;
  EXPECT_THROW(ok.write("/nonexistent-dir/x.gguf"), Error);
  fs::remove_all(tmp_dir());
}

TEST(GgufVocab, InverseOfTheGgufTokenizer) {
  for (const char* pre : {"smollm", "llama-bpe", "qwen2", "gpt-2"}) {
    tok::GgufVocab v;
    v.tokens = {"<|endoftext|>", "<|im_start|>", "<tool>"};
    v.token_types = {3, 3, 4};
    for (int b = 0; b < 256; ++b) {
      v.tokens.push_back(tok::bytes_to_unicode(std::string(1, static_cast<char>(b))));
      v.token_types.push_back(1);
    }
    v.tokens.push_back("Ġt");
    v.token_types.push_back(1);
    v.merges = {"Ġ t"};
    v.pre = pre;
    v.bos_id = 1;
    v.eos_id = 0;
    v.add_bos = std::string(pre) == "llama-bpe";
    v.chat_template = "{{ messages }}";
    const auto t = tok::make_bpe_from_gguf(v);
    const auto back = tok::gguf_vocab_of(*t);
    EXPECT_EQ(back.pre, pre);
    EXPECT_EQ(back.tokens, v.tokens);
    EXPECT_EQ(back.token_types, v.token_types);
    EXPECT_EQ(back.merges, v.merges);
    EXPECT_EQ(back.bos_id, 1);
    EXPECT_EQ(back.eos_id, 0);
    EXPECT_EQ(back.pad_id, -1);
    EXPECT_EQ(back.add_bos, v.add_bos);
    EXPECT_EQ(back.chat_template, v.chat_template);
  }
}
