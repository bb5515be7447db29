#include "quantize/calibration.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>

#include "core/error.h"
#include "data/jsonl_dataset.h"
#include "io/atomic_write.h"
#include "tokenizer/chat_template.h"

namespace sllm::quantize {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<int32_t> token_stream(const std::string& path, const tok::Tokenizer& t) {
  if (ends_with(path, ".jsonl")) {
    data::DatasetOptions o;
    o.completion_only = false;
    o.max_seq_length = int64_t{1} << 40;  // never truncate: the stream is cut into windows below
    auto d = data::load_jsonl(path, t, tok::detect_chat_template(t), o);
    std::vector<int32_t> ids;
    for (const auto& e : d.examples) ids.insert(ids.end(), e.ids.begin(), e.ids.end());
    return ids;
  }
  std::vector<int32_t> ids;
  if (t.add_bos && t.bos_id >= 0) ids.push_back(t.bos_id);
  auto body = t.encode(io::read_file(path), /*parse_special=*/false);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

}  // namespace

at::Tensor load_calibration(const std::string& path, const tok::Tokenizer& t,
                            const CalibOptions& o) {
  SLLM_CHECK(o.samples >= 1, "--calib-samples must be at least 1, got {}", o.samples);
  SLLM_CHECK(o.seqlen >= 16, "--calib-seqlen must be at least 16, got {}", o.seqlen);
  SLLM_CHECK(std::filesystem::is_regular_file(path), "calibration file '{}' does not exist", path);
  const auto ids = token_stream(path, t);
  const int64_t n = static_cast<int64_t>(ids.size()), need = o.samples * o.seqlen;
  SLLM_CHECK(n >= need,
             "{}: {} tokens is too little calibration text; --calib-samples {} x --calib-seqlen "
             "{} needs {} tokens: give a longer file or lower --calib-samples/--calib-seqlen",
             path, n, o.samples, o.seqlen, need);
  // Non-overlapping windows: pick `samples` of the n / seqlen slots at random, keep file order.
  std::vector<int64_t> slots(n / o.seqlen);
  std::iota(slots.begin(), slots.end(), 0);
  std::mt19937_64 rng(o.seed);
  for (int64_t i = 0; i < o.samples; ++i) {  // partial Fisher-Yates, portable across libraries
    const int64_t j = i + static_cast<int64_t>(rng() % (slots.size() - i));
    std::swap(slots[i], slots[j]);
  }
  slots.resize(o.samples);
  std::sort(slots.begin(), slots.end());
  auto out = at::empty({o.samples, o.seqlen}, at::kLong);
  auto* p = out.data_ptr<int64_t>();
  for (int64_t s = 0; s < o.samples; ++s)
    for (int64_t k = 0; k < o.seqlen; ++k) p[s * o.seqlen + k] = ids[slots[s] * o.seqlen + k];
  return out;
}

}  // namespace sllm::quantize
