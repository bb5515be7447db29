// sllm's logits for the reference scripts (check_peft.py): the model and adapter are loaded the
// way `sllm eval --adapter` loads them (apps::load_from_config) and run through the
// full-sequence forward, so a script can compare them with transformers + PEFT token for token.
//
//   sllm_logits MODEL ADAPTER_DIR|- IDS_FILE OUT_FILE [THREADS]
//
// IDS_FILE: one sequence per line, token ids separated by spaces. OUT_FILE: for each sequence
// in order, its [T, vocab] logits as little-endian float32, concatenated (the script knows T and
// reads vocab from the model's config). Exit 1 with one line on stderr on any error.
#include <ATen/ATen.h>

#include <cstdint>
#include <exception>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "apps/common.h"

namespace {

std::vector<std::vector<int64_t>> read_ids(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read the ids file " + path);
  std::vector<std::vector<int64_t>> seqs;
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream s(line);
    std::vector<int64_t> ids;
    int64_t id = 0;
    while (s >> id) ids.push_back(id);
    if (!s.eof()) throw std::runtime_error(path + ": a line holds something other than ids");
    if (!ids.empty()) seqs.push_back(std::move(ids));
  }
  if (seqs.empty()) throw std::runtime_error(path + " holds no sequence");
  return seqs;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5 || argc > 6) {
    std::cerr << "usage: sllm_logits MODEL ADAPTER_DIR|- IDS_FILE OUT_FILE [THREADS]\n";
    return 2;
  }
  try {
    auto cfg = sllm::options::defaults(sllm::apps::model_group().table());
    cfg["model"] = argv[1];
    if (std::string(argv[2]) != "-") cfg["adapter"] = argv[2];
    cfg["threads"] = argc == 6 ? std::stoll(argv[5]) : 1;
    const auto seqs = read_ids(argv[3]);
    const auto m = sllm::apps::load_from_config(cfg);
    const int64_t vocab = m.model->config().vocab_size;
    std::ofstream out(argv[4], std::ios::binary);
    if (!out) throw std::runtime_error(std::string("cannot write ") + argv[4]);
    at::NoGradGuard no_grad;
    for (const auto& ids : seqs) {
      for (const auto id : ids)
        if (id < 0 || id >= vocab)
          throw std::runtime_error("token id " + std::to_string(id) + " is outside the vocab");
      const auto t = at::tensor(ids, at::kLong).unsqueeze(0);
      const auto logits = m.model->forward_full(t).to(at::kFloat).contiguous();
      out.write(reinterpret_cast<const char*>(logits.data_ptr<float>()),
                static_cast<std::streamsize>(logits.numel() * sizeof(float)));
    }
    if (!out) throw std::runtime_error(std::string("writing ") + argv[4] + " failed");
  } catch (const std::exception& e) {
    std::cerr << "sllm_logits: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
