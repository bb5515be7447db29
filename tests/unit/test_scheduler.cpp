// Engine scheduling without a model: admission under max_seqs and KV block reservation, the
// step token budget, decode-first ordering, removal of queued and running requests.
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

TEST(Scheduler, AdmissionReservesKvBlocks) {
  BlockManager mgr(4, 4);  // 16 token slots
  Scheduler sched({8, 100}, mgr);
  SeqState a = make_seq(0, 2), b = make_seq(1, 2);
  sched.enqueue(&a, 10);  // 3 blocks
  sched.enqueue(&b, 5);   // 2 blocks: does not fit next to a
  auto plan = sched.schedule();
  ASSERT_EQ(plan.admitted.size(), 1u);
  EXPECT_EQ(sched.reserved_blocks(), 3);
  EXPECT_EQ(mgr.stats().used_blocks, 1);  // reserved, not yet taken
  EXPECT_EQ(sched.num_waiting(), 1);
  complete(plan);
  sched.remove(&a);
  EXPECT_EQ(sched.reserved_blocks(), 0);
  EXPECT_EQ(mgr.num_free_blocks(), 4);
  plan = sched.schedule();
  ASSERT_EQ(plan.admitted.size(), 1u);
  EXPECT_EQ(plan.admitted[0], &b);
  EXPECT_EQ(sched.reserved_blocks(), 2);
  // A request that could never fit is refused when queued.
  SeqState big = make_seq(2, 2);
  EXPECT_THROW(sched.enqueue(&big, 17), sllm::Error);
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
  EXPECT_EQ(sched.reserved_blocks(), 0);
  EXPECT_TRUE(sched.idle());
  EXPECT_TRUE(sched.schedule().chunks.empty());
  EXPECT_THROW(sched.remove(&a), sllm::Error);
}

}  // namespace
