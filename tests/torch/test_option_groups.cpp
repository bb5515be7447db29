// The commands' option tables: each builds a defaults tree, and the struct-backed groups fill
// their structs from those defaults with the values the structs themselves default to (so a
// default changed on one side only is caught).
#include <gtest/gtest.h>

#include <set>

#include "apps/apps.h"
#include "apps/common.h"
#include "core/options.h"

namespace {

using sllm::options::Table;

TEST(OptionGroups, EveryCommandTableBuilds) {
  for (auto fn : {sllm::apps::generate_options, sllm::apps::chat_options,
                  sllm::apps::tokenize_options, sllm::apps::eval_options, sllm::apps::sft_options,
                  sllm::apps::qlora_options, sllm::apps::merge_options, sllm::apps::info_options,
                  sllm::apps::convert_options, sllm::apps::quantize_options}) {
    const Table t = fn();
    ASSERT_FALSE(t.empty());
    EXPECT_NO_THROW(sllm::options::defaults(t)) << t.front().key;
    std::set<std::string> flags;
    for (const auto& o : t) {
      if (o.flag.empty()) continue;
      EXPECT_EQ(o.flag.find(' '), std::string::npos) << o.flag;
      EXPECT_TRUE(flags.insert(o.flag).second) << "flag given twice: " << o.flag;
    }
  }
}

// A group's struct filled from the group's own defaults tree.
template <class S>
S from_defaults(const sllm::options::Group<S>& g) {
  return g.fill(sllm::options::defaults(g.table()));
}

TEST(OptionGroups, TableDefaultsAreTheStructDefaults) {
  const auto e = from_defaults(sllm::apps::engine_group());
  const sllm::engine::EngineOptions e0;
  EXPECT_EQ(e.context, e0.context);
  EXPECT_EQ(e.kv_tokens, e0.kv_tokens);
  EXPECT_EQ(e.block_size, e0.block_size);
  EXPECT_EQ(e.max_seqs, e0.max_seqs);
  EXPECT_EQ(e.max_step_tokens, e0.max_step_tokens);
  EXPECT_EQ(e.prefix_caching, e0.prefix_caching);

  const auto p = from_defaults(sllm::apps::sampling_group());
  const sllm::engine::SamplingParams p0;
  EXPECT_EQ(p.temperature, p0.temperature);
  EXPECT_EQ(p.top_k, p0.top_k);
  EXPECT_EQ(p.top_p, p0.top_p);
  EXPECT_EQ(p.min_p, p0.min_p);
  EXPECT_EQ(p.repetition_penalty, p0.repetition_penalty);
  EXPECT_EQ(p.seed, p0.seed);
  EXPECT_EQ(p.max_new_tokens, p0.max_new_tokens);
  EXPECT_EQ(p.stop, p0.stop);
  EXPECT_EQ(p.ignore_eos, p0.ignore_eos);

  const auto l = from_defaults(sllm::apps::model_group());
  const sllm::load::LoadOptions l0;
  EXPECT_EQ(l.dtype, l0.dtype);
  EXPECT_EQ(l.device, l0.device);
  EXPECT_EQ(l.quantize, l0.quantize);
}

}  // namespace
