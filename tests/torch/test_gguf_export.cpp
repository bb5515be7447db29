// sllm convert --to gguf on tiny random models: an F32 export loads back to the same weights and
// logits (the q/k rows permuted for llama.cpp and un-permuted by the loader), block types hold the
// quantizers' blocks of the Hugging Face rows, blocks already in the requested type are copied,
// and what llama.cpp cannot take is refused with one clear error. llama.cpp itself loading the
// default model's export is tests/reference/check_gguf_export.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "core/error.h"
#include "io/atomic_write.h"
#include "io/gguf.h"
#include "kernels/cpu/gguf_quant.h"
#include "load/gguf_export.h"
#include "load/loader.h"
#include "ops/gguf.h"
#include "tiny_model.h"

using namespace sllm;
namespace fs = std::filesystem;

namespace {

struct TmpDir {
  fs::path p = fs::temp_directory_path() / ("sllm_gguf_export_" + std::to_string(::getpid()));
  TmpDir() { fs::create_directories(p); }
  ~TmpDir() { fs::remove_all(p); }
  std::string file(const std::string& n) const { return (p / n).string(); }
};

load::LoadedModel loaded(std::shared_ptr<const model::LlamaModel> m) {
  load::LoadedModel lm;
  lm.model = std::move(m);
  lm.tokenizer = fixtures::tiny_tokenizer();
  lm.format = "hf";
  lm.display_name = "tiny";
  return lm;
}

void expect_error_contains(const std::function<void()>& f, const std::string& want) {
  try {
    f();
    ADD_FAILURE() << "no error, wanted '" << want << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

at::Tensor logits(const model::LlamaModel& m) {
  return m.forward_full(at::arange(0, 40, at::kLong).reshape({2, 20}) * 5 + 3);
}

}  // namespace

TEST(GgufExport, F32LoadsBackExactly) {
  TmpDir d;
  for (bool tied : {true, false})
    for (int64_t kv : {4, 2, 1}) {
      auto m = fixtures::tiny_model(fixtures::tiny_config(kv, false, tied), 3);
      const auto path = d.file("f32_" + std::to_string(tied) + std::to_string(kv) + ".gguf");
      load::save_gguf(loaded(m), path, "f32");
      const auto back = load::load_model(path);
      ASSERT_EQ(back.model->config().num_kv_heads, kv);
      EXPECT_EQ(back.model->config().tie_embeddings, tied);
      EXPECT_TRUE(at::equal(back.model->embed(), m->embed()));
      EXPECT_TRUE(at::equal(back.model->final_norm(), m->final_norm()));
      for (size_t i = 0; i < m->layers().size(); ++i) {
        const auto &a = m->layers()[i], &b = back.model->layers()[i];
        EXPECT_TRUE(at::equal(a.attn_norm, b.attn_norm));
        EXPECT_TRUE(at::equal(a.ffn_norm, b.ffn_norm));
        const auto la = a.linears(), lb = b.linears();
        for (size_t k = 0; k < la.size(); ++k)
          EXPECT_TRUE(at::equal(la[k].linear.dense_weight(), lb[k].linear.dense_weight()))
              << "layer " << i << " " << la[k].name;
      }
      EXPECT_TRUE(at::equal(logits(*back.model), logits(*m)));
      EXPECT_EQ(back.tokenizer->encode("hello <|im_end|> world"),
                fixtures::tiny_tokenizer()->encode("hello <|im_end|> world"));
      const auto f = io::GgufFile::open(path, false);
      EXPECT_EQ(f.get_string("general.architecture"), "llama");
      EXPECT_EQ(f.get_int("general.file_type"), 0);
      EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "gpt-2");
      EXPECT_EQ(f.get_string("tokenizer.chat_template"), "<|im_start|>");
    }
}

TEST(GgufExport, MistralIsWrittenAsLlama) {
  TmpDir d;
  auto c = fixtures::tiny_config(1);
  c.architecture = "mistral";
  auto m = fixtures::tiny_model(c, 6);
  load::save_gguf(loaded(m), d.file("mistral.gguf"), "f32");
  const auto back = load::load_model(d.file("mistral.gguf"));
  EXPECT_EQ(back.model->config().architecture, "llama");
  EXPECT_TRUE(at::equal(logits(*back.model), logits(*m)));
}

TEST(GgufExport, Qwen2KeepsItsRowOrderAndBiases) {
  TmpDir d;
  auto c = fixtures::tiny_config(2, true, false);
  c.architecture = "qwen2";
  auto m = fixtures::tiny_model(c, 4);
  const auto path = d.file("qwen2.gguf");
  load::save_gguf(loaded(m), path, "f32");
  const auto f = io::GgufFile::open(path, false);
  EXPECT_EQ(f.get_string("general.architecture"), "qwen2");
  EXPECT_EQ(f.get_int("qwen2.block_count"), 2);
  ASSERT_NE(f.find("blk.1.attn_k.bias"), nullptr);
  const auto back = load::load_model(path);
  EXPECT_EQ(back.model->config().architecture, "qwen2");
  EXPECT_TRUE(back.model->config().attention_bias);
  for (size_t i = 0; i < m->layers().size(); ++i) {
    EXPECT_TRUE(
        at::equal(back.model->layers()[i].qkv.dense_weight(), m->layers()[i].qkv.dense_weight()));
    EXPECT_TRUE(at::equal(back.model->layers()[i].qkv.bias, m->layers()[i].qkv.bias));
  }
  EXPECT_TRUE(at::equal(logits(*back.model), logits(*m)));
}

TEST(GgufExport, EmbeddingRowsPastTheTokenizerBecomePadTokens) {
  TmpDir d;
  auto c = fixtures::tiny_config();
  c.vocab_size = 264;  // 5 rows more than the tokenizer's 259 tokens, as padded vocabularies have
  auto m = fixtures::tiny_model(c, 2);
  const auto path = d.file("pad.gguf");
  load::save_gguf(loaded(m), path, "f16");
  const auto f = io::GgufFile::open(path, false);
  const auto& tokens = f.metadata()["tokenizer.ggml.tokens"];
  ASSERT_EQ(tokens.size(), 264u);
  EXPECT_EQ(tokens[259], "[PAD259]");
  EXPECT_EQ(f.metadata()["tokenizer.ggml.token_type"][263], 5);  // unused
  const auto back = load::load_model(path);
  EXPECT_EQ(back.tokenizer->encode("pad me"), fixtures::tiny_tokenizer()->encode("pad me"));
  c.vocab_size = 200;  // fewer rows than tokens: no way to write the tokenizer
  expect_error_contains(
      [&] { load::save_gguf(loaded(fixtures::tiny_model(c)), d.file("s.gguf"), "f16"); },
      "259 tokens but the embedding only 200 rows");
}

TEST(GgufExport, BlockTypesHoldTheQuantizedHuggingFaceRows) {
  TmpDir d;
  auto m = fixtures::tiny_model(fixtures::tiny_config(2, false, true), 5);
  for (const std::string type : {"q8_0", "q4_0", "q4_1", "f16"}) {
    const auto path = d.file(type + ".gguf");
    load::save_gguf(loaded(m), path, type);
    const auto f = io::GgufFile::open(path, false);
    const uint32_t want = type == "q8_0" ? 8 : type == "q4_0" ? 2 : type == "q4_1" ? 3 : 1;
    EXPECT_EQ(f.find("blk.0.attn_q.weight")->ggml_type, want);
    EXPECT_EQ(f.find("blk.1.ffn_down.weight")->ggml_type, want);
    EXPECT_EQ(f.find("blk.0.attn_norm.weight")->ggml_type, 0u);
    EXPECT_EQ(f.find("token_embd.weight")->ggml_type, want == 2 || want == 3 ? 8u : want);
    if (type == "f16") continue;
    // The loader keeps these blocks as stored, q/k rows un-permuted: they must be the quantizer's
    // blocks of the Hugging Face rows (quantization is per row, so it commutes with the row order).
    const auto back = load::load_model(path);
    const auto& qkv = back.model->layers()[1].qkv;
    ASSERT_TRUE(qkv.is<model::GgufFormat>()) << type;
    auto w = m->layers()[1].qkv.dense_weight().contiguous();
    std::string blocks(qkv.get<model::GgufFormat>().only().nbytes(), '\0');
    if (want == 8) kernels::cpu::quant_q8_0(w.data_ptr<float>(), blocks.data(), w.numel());
    if (want == 2) kernels::cpu::quant_q4_0(w.data_ptr<float>(), blocks.data(), w.numel());
    if (want == 3) kernels::cpu::quant_q4_1(w.data_ptr<float>(), blocks.data(), w.numel());
    const auto& b = qkv.get<model::GgufFormat>().only().blocks;
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(b.data_ptr<uint8_t>()), b.nbytes()), blocks)
        << type;
    const auto ref = logits(*m);
    const auto diff = (logits(*back.model) - ref).abs().max().item<float>();
    EXPECT_LT(diff, (want == 8 ? 0.02f : 0.3f) * ref.abs().max().item<float>()) << type;
  }
}

TEST(GgufExport, KTypesFollowLlamaCppsRecipeAndFallbacks) {
  TmpDir d;
  // Rows of whole 256-element super-blocks: q4_k_m gives attn_v and ffn_down of layers 0, 3, 6
  // and 7 of 8 Q6_K (llama.cpp's use_more_bits), the rest Q4_K, the tied embedding Q6_K.
  auto c = fixtures::tiny_config(2, false, true);
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.head_dim = 64;
  c.num_layers = 8;
  auto m = fixtures::tiny_model(c, 9);
  const auto path = d.file("q4_k_m.gguf");
  load::save_gguf(loaded(m), path, "q4_k_m");
  const auto f = io::GgufFile::open(path, false);
  EXPECT_EQ(f.find("token_embd.weight")->ggml_type, 14u);
  for (int i = 0; i < 8; ++i) {
    const auto p = "blk." + std::to_string(i) + ".";
    const uint32_t more = (i == 0 || i == 3 || i == 6 || i == 7) ? 14u : 12u;
    EXPECT_EQ(f.find(p + "attn_v.weight")->ggml_type, more) << i;
    EXPECT_EQ(f.find(p + "ffn_down.weight")->ggml_type, more) << i;
    EXPECT_EQ(f.find(p + "attn_q.weight")->ggml_type, 12u) << i;
    EXPECT_EQ(f.find(p + "ffn_up.weight")->ggml_type, 12u) << i;
  }
  // Loaded back, every weight (its blocks decoded) is the model's within 4-bit error (~7 %
  // relative for Q4_K, ~2 % for Q6_K; logits of this deep random model amplify it too much).
  const auto back = load::load_model(path);
  auto rel = [](const at::Tensor& a, const at::Tensor& b) {
    return ((b.to(at::kFloat) - a).norm() / a.norm()).item<float>();
  };
  EXPECT_LT(rel(m->embed(), back.model->embed()), 0.05f);
  for (size_t i = 0; i < m->layers().size(); ++i) {
    const auto la = m->layers()[i].linears(), lb = back.model->layers()[i].linears();
    for (size_t k = 0; k < la.size(); ++k)
      for (int j = 0; j < static_cast<int>(std::max<size_t>(la[k].linear.parts.size(), 1)); ++j)
        EXPECT_LT(rel(la[k].linear.dense_part(j), lb[k].linear.dense_part(j)), 0.1f)
            << i << " " << la[k].name << " part " << j;
  }

  // 64-element rows are not whole super-blocks: llama.cpp's fallbacks (Q4_K -> Q5_0,
  // Q5_K -> Q5_1, Q6_K -> Q8_0; the head Q8_0), which load back close to the model.
  auto small = fixtures::tiny_model(fixtures::tiny_config(2, false, false), 11);
  for (const auto& [type, want] : {std::pair<std::string, uint32_t>{"q4_k", 6},
                                   {"q5_k", 7},
                                   {"q6_k", 8},
                                   {"q5_0", 6},
                                   {"q5_1", 7}}) {
    const auto sp = d.file("small_" + type + ".gguf");
    load::save_gguf(loaded(small), sp, type);
    const auto g = io::GgufFile::open(sp, false);
    EXPECT_EQ(g.find("blk.0.attn_q.weight")->ggml_type, want) << type;
    EXPECT_EQ(g.find("blk.1.ffn_down.weight")->ggml_type, want) << type;  // 96: whole 32 blocks
    EXPECT_EQ(g.find("output.weight")->ggml_type, 8u) << type;
    EXPECT_EQ(g.find("token_embd.weight")->ggml_type, type.back() == 'k' ? want : 8u) << type;
    const auto sb = load::load_model(sp);
    const auto sr = logits(*small);
    EXPECT_LT((logits(*sb.model) - sr).abs().max().item<float>(),
              0.2f * sr.abs().max().item<float>())
        << type;
  }
}

TEST(GgufExport, BlocksInTheRequestedTypeAreCopied) {
  TmpDir d;
  auto m = fixtures::tiny_model(fixtures::tiny_config(2, false, true), 7);
  for (const std::string type : {"q8_0", "q4_1"}) {
    const auto a = d.file(type + "_a.gguf"), b = d.file(type + "_b.gguf");
    load::save_gguf(loaded(m), a, type);
    auto again = load::load_model(a);  // Linears (and the tied head) stay in their blocks
    ASSERT_TRUE(again.model->layers()[0].gate_up.is<model::GgufFormat>());
    load::save_gguf(again, b, type);
    EXPECT_EQ(io::read_file(a), io::read_file(b)) << type;
  }
}

TEST(GgufExport, RefusesWhatItCannotWrite) {
  TmpDir d;
  const auto& expect_error = expect_error_contains;
  auto m = fixtures::tiny_model(fixtures::tiny_config(), 1);
  expect_error([&] { load::save_gguf(loaded(m), d.file("x.gguf"), "q3_k"); }, "unknown GGUF type");
  io::write_file_atomic(d.file("exists.gguf"), "x");
  expect_error([&] { load::save_gguf(loaded(m), d.file("exists.gguf"), "f16"); }, "already exists");
  expect_error([&] { load::save_gguf(loaded(m), d.file("no/such/dir.gguf"), "f16"); },
               "does not exist");
  auto c = fixtures::tiny_config(2, true);  // q/k/v biases in a llama model
  expect_error([&] { load::save_gguf(loaded(fixtures::tiny_model(c)), d.file("q.gguf"), "f16"); },
               "qwen2 models only");
  c = fixtures::tiny_config();
  c.rope_scaling.type = "llama3";
  expect_error([&] { load::save_gguf(loaded(fixtures::tiny_model(c)), d.file("r.gguf"), "f16"); },
               "llama3");
  EXPECT_FALSE(fs::exists(d.file("x.gguf")));
  EXPECT_FALSE(fs::exists(d.file("q.gguf")));
}
