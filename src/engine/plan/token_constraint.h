// A rule on what a sequence may generate (a grammar, a format), applied to each step's logits
// before sampling. Stateful: one instance per sequence.
#pragma once

#include <cstdint>

namespace sllm::engine {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Sets the logits of the tokens not allowed next to -inf; false when no token is allowed.
  virtual bool mask(float* logits, int64_t vocab) const = 0;
  // The token was generated (it was allowed).
  virtual void advance(int32_t token) = 0;
  // The output is complete: the sequence ends here.
  virtual bool complete() const = 0;
};

}  // namespace sllm::engine
