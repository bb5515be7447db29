#include "engine/nucleus.h"

namespace sllm::engine {

size_t nucleus_size(const std::vector<double>& probs, double top_p, double min_p) {
  size_t keep = probs.size();
  if (top_p < 1.0) {
    double cum = 0;
    for (size_t i = 0; i < probs.size(); ++i) {
      cum += probs[i];
      if (cum >= top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (min_p > 0) {
    const double floor = min_p * probs[0];
    size_t k = 1;
    while (k < keep && probs[k] >= floor) ++k;
    keep = k;
  }
  return keep;
}

}  // namespace sllm::engine
