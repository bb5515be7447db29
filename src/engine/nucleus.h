// The top-p and min-p cut shared by the sampler and the speculative acceptance rule, so that a
// speculative run keeps exactly the tokens a plain run may draw.
#pragma once

#include <cstddef>
#include <vector>

namespace sllm::engine {

// probs: sorted descending, summing to 1 (non-empty). Returns how many leading entries top-p
// (the shortest prefix whose mass reaches top_p; 1: off) and then min-p (entries at least
// min_p times the largest; 0: off) keep.
size_t nucleus_size(const std::vector<double>& probs, double top_p, double min_p);

}  // namespace sllm::engine
