// Engine scheduling without a model: admission under max_seqs and by the KV blocks needed now,
// preemption by recompute, cached prefixes, the step token budget, decode-first ordering,
// removal of queued and running requests.
#include "engine/plan/scheduler.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace {

using sllm::engine::Scheduler;
using sllm::engine::SeqState;
using sllm::kv::BlockManager;

SeqState make_seq(int64_t id, int prompt) {
  SeqState s;
  s.id = id;
  s.tokens.assign(prompt, 1);
  return s;
}

// What the engine does after the forward: chunks are cached, finished prefills get a token.
void complete(const sllm::engine::StepPlan& plan) {
  for (const auto& c : plan.chunks) {
    const bool sampled = c.samples();
    c.seq->computed += c.n;
    if (sampled) c.seq->tokens.push_back(2);
  }
}

using Seqs = std::vector<SeqState*>;
using V = std::vector<int64_t>;

// The sequences of the plan's chunks, in order, and the chunks' token counts.
Seqs order(const sllm::engine::StepPlan& plan) {
  Seqs out;
  for (const auto& c : plan.chunks) out.push_back(c.seq);
  return out;
}
V sizes(const sllm::engine::StepPlan& plan) {
  V out;
  for (const auto& c : plan.chunks) out.push_back(c.n);
  return out;
}

// A pool of 64 blocks of 4 and three queued requests a, b, c with the given prompt lengths.
struct Three {
  BlockManager mgr{64, 4};
  Scheduler sched;
  SeqState a, b, c;
  Three(sllm::engine::SchedulerLimits limits, int pa, int pb, int pc, int64_t max_tokens)
      : sched(limits, mgr), a(make_seq(0, pa)), b(make_seq(1, pb)), c(make_seq(2, pc)) {
    for (SeqState* s : {&a, &b, &c}) sched.enqueue(s, max_tokens);
  }
};

TEST(Scheduler, AdmitsUpToMaxSeqs) {
  Three t({2, 100}, 3, 3, 3, 8);
  auto& [mgr, sched, a, b, c] = t;
  auto plan = sched.schedule();
  ASSERT_EQ(plan.admitted.size(), 2u);
  EXPECT_EQ(plan.admitted[0], &a);
  EXPECT_EQ(plan.admitted[1], &b);
  EXPECT_EQ(plan.chunks.size(), 2u);
  EXPECT_EQ(c.kv_id, -1);
  EXPECT_EQ(sched.num_waiting(), 1);
  complete(plan);
  sched.remove(&a);  // a finishes: its blocks return and c can start
  EXPECT_EQ(mgr.num_free_blocks(), 63);
  plan = sched.schedule();
  ASSERT_EQ(plan.admitted.size(), 1u);
  EXPECT_EQ(plan.admitted[0], &c);
  EXPECT_EQ(order(plan), (Seqs{&b, &c}));  // decode first
  EXPECT_EQ(sizes(plan), (V{1, 3}));
}

TEST(Scheduler, AdmissionTakesWhatIsNeededNow) {
  BlockManager mgr(4, 4);  // 16 token slots
  Scheduler sched({8, 100}, mgr);
  SeqState a = make_seq(0, 2), b = make_seq(1, 2);
  sched.enqueue(&a, 10);  // may grow to 3 blocks
  sched.enqueue(&b, 5);   // may grow to 2: both may not fit at their longest, but fit now
  auto plan = sched.schedule();
  ASSERT_EQ(plan.admitted.size(), 2u);
  EXPECT_EQ(mgr.stats().used_blocks, 2);
  EXPECT_EQ(sched.num_waiting(), 0);
  complete(plan);
  sched.remove(&a);
  sched.remove(&b);
  EXPECT_EQ(mgr.num_free_blocks(), 4);
  // A prompt waits while the running sequences need the blocks for theirs.
  SeqState c = make_seq(2, 10), d = make_seq(3, 6);
  sched.enqueue(&c, 12);  // 3 blocks for its prompt
  sched.enqueue(&d, 8);   // 2 more: only 1 is left
  plan = sched.schedule();
  ASSERT_EQ(plan.admitted.size(), 1u);
  EXPECT_EQ(plan.admitted[0], &c);
  EXPECT_EQ(sched.num_waiting(), 1);
  complete(plan);
  sched.remove(&c);
  plan = sched.schedule();
  ASSERT_EQ(plan.admitted.size(), 1u);
  EXPECT_EQ(plan.admitted[0], &d);
  // A request that could never fit, even alone, is refused when queued.
  SeqState big = make_seq(4, 2);
  try {
    sched.enqueue(&big, 17);
    FAIL() << "expected a refusal";
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs 5 KV blocks but the pool has 4"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(sched.stats().preemptions, 0);
}

// Requests that all fit at admission and outgrow the pool together: the latest admitted is
// preempted (blocks freed, tokens kept, queued first), recomputed later, and every request
// reaches its length.
TEST(Scheduler, PreemptsTheLatestAdmittedAndEveryRequestFinishes) {
  BlockManager mgr(6, 4);  // 24 slots
  Scheduler sched({8, 64}, mgr);
  const int64_t kMax = 14;  // 4 blocks each: two cannot grow side by side to their end
  std::vector<SeqState> seqs;
  for (int i = 0; i < 3; ++i) seqs.push_back(make_seq(i, 3 + i));
  for (auto& s : seqs) sched.enqueue(&s, kMax);
  std::vector<int64_t> preempted;
  int steps = 0;
  while (!sched.idle() && ++steps < 200) {
    const SeqState* latest = nullptr;
    for (const SeqState* r : sched.running())
      if (!latest || r->admitted_at > latest->admitted_at) latest = r;
    const auto plan = sched.schedule();
    for (const SeqState* p : plan.preempted) {
      preempted.push_back(p->id);
      EXPECT_EQ(p->kv_id, -1);
      EXPECT_EQ(p->computed, 0);
      EXPECT_EQ(p->admitted_at, -1);
      EXPECT_GT(p->length(), 3 + p->id);  // its generated tokens are kept
    }
    if (!plan.preempted.empty()) {  // the latest admitted goes first
      EXPECT_EQ(plan.preempted[0], plan.admitted.empty() ? latest : plan.admitted.back());
    }
    EXPECT_LE(mgr.stats().used_blocks, 6);
    complete(plan);
    for (auto& s : seqs)
      if (s.kv_id >= 0 && s.length() >= kMax) sched.remove(&s);
  }
  EXPECT_TRUE(sched.idle());
  EXPECT_GT(sched.stats().preemptions, 0);
  EXPECT_EQ(sched.stats().preemptions, static_cast<int64_t>(preempted.size()));
  EXPECT_EQ(preempted.front(), 2);  // c was admitted last
  for (const auto& s : seqs) EXPECT_EQ(s.length(), kMax) << s.id;
  EXPECT_EQ(mgr.stats().used_blocks, 0);
}

TEST(Scheduler, PreemptedRequestIsQueuedFirst) {
  BlockManager mgr(4, 4);
  Scheduler sched({2, 64}, mgr);
  SeqState a = make_seq(0, 8), b = make_seq(1, 8), c = make_seq(2, 1);
  for (SeqState* s : {&a, &b, &c}) sched.enqueue(s, 16);
  auto plan = sched.schedule();  // a and b: 2 blocks each, the pool is full
  ASSERT_EQ(plan.admitted.size(), 2u);
  complete(plan);  // 8 tokens computed each: both need a third block to go on
  plan = sched.schedule();
  ASSERT_EQ(plan.preempted, (Seqs{&b}));
  EXPECT_EQ(order(plan), (Seqs{&a}));
  EXPECT_EQ(b.length(), 9);
  EXPECT_EQ(sched.num_waiting(), 2);
  complete(plan);
  sched.remove(&a);
  plan = sched.schedule();  // b before c, recomputed from its first token
  ASSERT_EQ(plan.admitted.size(), 2u);
  EXPECT_EQ(plan.admitted[0], &b);
  EXPECT_EQ(order(plan), (Seqs{&c, &b}));
  EXPECT_EQ(plan.chunks[1].start, 0);
  EXPECT_EQ(plan.chunks[1].n, 9);
  EXPECT_TRUE(plan.chunks[1].samples());
}

TEST(Scheduler, SharesCachedPrefixAtAdmission) {
  BlockManager mgr(16, 4);
  mgr.enable_prefix_caching();
  Scheduler sched({8, 64}, mgr);
  SeqState a = make_seq(0, 10);
  for (int i = 0; i < 10; ++i) a.tokens[i] = 10 + i;
  sched.enqueue(&a, 16);
  complete(sched.schedule());
  sched.remove(&a);  // its two full blocks stay cached
  SeqState b = a, c = a;
  b.id = 1;
  c.id = 2;
  for (SeqState* s : {&b, &c}) {
    s->tokens.resize(9);
    s->computed = 0;
    s->kv_id = -1;
  }
  c.tokens.resize(8);
  sched.enqueue(&b, 16);
  sched.enqueue(&c, 16);
  const auto plan = sched.schedule();
  EXPECT_EQ(order(plan), (Seqs{&b, &c}));
  EXPECT_EQ(plan.chunks[0].start, 8);  // 8 tokens shared
  EXPECT_EQ(plan.chunks[0].n, 1);
  EXPECT_EQ(plan.chunks[1].start, 4);  // all 8 cached, but the last token is computed
  EXPECT_EQ(plan.chunks[1].n, 4);
  EXPECT_EQ(sched.stats().prefix_queries, 10 + 9 + 8);
  EXPECT_EQ(sched.stats().prefix_hits, 8 + 4);
  EXPECT_EQ(mgr.block_table(b.kv_id)[0], mgr.block_table(c.kv_id)[0]);
}

TEST(Scheduler, ChunkKeepsDraftsWithTheTokenBeforeThem) {
  BlockManager mgr(16, 4);
  Scheduler sched({8, 8}, mgr);
  SeqState s = make_seq(0, 10);
  s.draft = 3;  // e.g. preempted with drafts: verified when the recomputation ends
  sched.enqueue(&s, 16);
  auto plan = sched.schedule();
  EXPECT_EQ(sizes(plan), (V{6}));  // not 8: the last 4 go together
  EXPECT_FALSE(plan.chunks[0].samples());
  s.computed += 6;
  plan = sched.schedule();
  EXPECT_EQ(sizes(plan), (V{4}));
  EXPECT_EQ(plan.chunks[0].num_logits(), 4);
}

TEST(Scheduler, StepTokenBudget) {
  Three t({8, 10}, 4, 9, 1, 40);
  auto& [mgr, sched, a, b, c] = t;
  // Step 1: c (one token, like a decode) first, then a, then b's prompt cut to the budget.
  auto plan = sched.schedule();
  EXPECT_EQ(order(plan), (Seqs{&c, &a, &b}));
  EXPECT_EQ(sizes(plan), (V{1, 4, 5}));
  EXPECT_FALSE(plan.chunks[2].samples());
  EXPECT_EQ(plan.num_tokens(), 10);
  EXPECT_EQ(mgr.length(b.kv_id), 5);  // slots appended for the chunk only
  complete(plan);
  // Step 2: the two decodes, then the rest of b's prompt.
  plan = sched.schedule();
  EXPECT_EQ(order(plan), (Seqs{&c, &a, &b}));
  EXPECT_EQ(sizes(plan), (V{1, 1, 4}));
  EXPECT_EQ(plan.chunks[2].start, 5);
  EXPECT_TRUE(plan.chunks[2].samples());
  complete(plan);
}

TEST(Scheduler, BudgetCanLeaveSequencesOut) {
  Three t({8, 2}, 1, 1, 1, 8);
  auto& [mgr, sched, a, b, c] = t;
  auto plan = sched.schedule();
  ASSERT_EQ(plan.admitted.size(), 3u);
  EXPECT_EQ(order(plan), (Seqs{&a, &b}));
  EXPECT_EQ(mgr.length(c.kv_id), 0);
}

TEST(Scheduler, DecodeMovesAheadOfPrefill) {
  BlockManager mgr(64, 4);
  Scheduler sched({8, 4}, mgr);
  SeqState p = make_seq(0, 10);
  sched.enqueue(&p, 12);
  auto plan = sched.schedule();
  complete(plan);
  SeqState d = make_seq(1, 1);  // arrives later with a one-token prompt
  sched.enqueue(&d, 4);
  plan = sched.schedule();
  EXPECT_EQ(order(plan), (Seqs{&d, &p}));
  EXPECT_EQ(sizes(plan), (V{1, 3}));
  EXPECT_EQ(plan.chunks[1].start, 4);
  EXPECT_EQ(sched.running()[0], &d);
}

TEST(Scheduler, RemoveQueuedAndRunning) {
  BlockManager mgr(8, 4);
  Scheduler sched({1, 16}, mgr);
  SeqState a = make_seq(0, 6), b = make_seq(1, 2);
  sched.enqueue(&a, 8);
  sched.enqueue(&b, 4);
  auto plan = sched.schedule();
  EXPECT_EQ(mgr.stats().used_blocks, 2);
  sched.remove(&b);  // queued: just leaves the queue
  EXPECT_EQ(sched.num_waiting(), 0);
  sched.remove(&a);  // running: blocks back to the pool
  EXPECT_EQ(mgr.stats().used_blocks, 0);
  EXPECT_EQ(mgr.num_free_blocks(), 8);
  EXPECT_TRUE(sched.idle());
  EXPECT_TRUE(sched.schedule().chunks.empty());
  EXPECT_THROW(sched.remove(&a), sllm::Error);
}

}  // namespace
