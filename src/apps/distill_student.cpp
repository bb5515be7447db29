#include "apps/distill_student.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace sllm::apps {

std::vector<int64_t> student_layers(const nlohmann::json& spec, int64_t n) {
  std::vector<int64_t> out;
  if (spec.is_object() && spec.contains("every_k")) {
    SLLM_CHECK(spec.size() == 1 && spec["every_k"].is_number_integer(),
               "student.init.layers: expected {{every_k: K}} with an integer K (got {})",
               spec.dump());
    const int64_t k = spec["every_k"].get<int64_t>();
    SLLM_CHECK(k >= 1 && k <= n,
               "student.init.layers.every_k must be between 1 and the teacher's {} layers (got {})",
               n, k);
    for (int64_t i = 0; i < n; i += k) out.push_back(i);
    return out;
  }
  SLLM_CHECK(spec.is_array() && !spec.empty(),
             "student.init.layers must be {{every_k: K}} or a non-empty list of layer indices "
             "(got {})",
             spec.dump());
  for (const auto& v : spec) {
    SLLM_CHECK(v.is_number_integer(), "student.init.layers: {} is not a layer index", v.dump());
    const int64_t i = v.get<int64_t>();
    SLLM_CHECK(i >= 0 && i < n,
               "student.init.layers: layer {} is out of range: the teacher has {} layers (0..{})",
               i, n, n - 1);
    SLLM_CHECK(out.empty() || i > out.back(),
               "student.init.layers must be strictly increasing (layer {} after {})", i,
               out.back());
    out.push_back(i);
  }
  return out;
}

namespace {

model::Linear dense_copy(const model::Linear& l, const at::Tensor& w) {
  model::Linear out(w.contiguous().clone(), l.bias.defined() ? l.bias.clone() : at::Tensor());
  out.parts = l.parts;
  return out;
}

// Intermediate units to keep: the top `width` by importance, in their original order.
at::Tensor mlp_units(const model::DecoderLayer& L, int64_t I, int64_t width) {
  auto gu = L.gate_up.dense_weight();
  auto d = L.down.dense_weight();
  auto score =
      (gu.narrow(0, 0, I).square().sum(1) * gu.narrow(0, I, I).square().sum(1) * d.square().sum(0))
          .sqrt();
  return std::get<0>(std::get<1>(score.topk(width)).sort());
}

}  // namespace

std::shared_ptr<const model::LlamaModel> student_from_teacher(const model::LlamaModel& teacher,
                                                              const std::vector<int64_t>& layers,
                                                              int64_t intermediate_size) {
  at::NoGradGuard no_grad;
  auto c = teacher.config();
  const int64_t I = c.intermediate_size;
  SLLM_CHECK(intermediate_size >= 0 && intermediate_size <= I,
             "student.init.intermediate_size must be between 1 and the teacher's {} (got {}; 0 "
             "keeps the teacher's width)",
             I, intermediate_size);
  const int64_t width = intermediate_size > 0 ? intermediate_size : I;
  std::vector<model::DecoderLayer> out;
  for (const int64_t i : layers) {
    const auto& L = teacher.layers().at(static_cast<size_t>(i));
    for (const auto& [name, l] : L.linears())
      SLLM_CHECK(l.is<model::DenseFormat>() && l.lora.empty(),
                 "the student is cut out of a dense teacher without adapters; layer {} {} is {}{} "
                 "(load the teacher with quant: none, and merge adapters first)",
                 i, name, l.format_name(), l.lora.empty() ? "" : " with LoRA adapters");
    model::DecoderLayer S{L.attn_norm.clone(),
                          L.ffn_norm.clone(),
                          dense_copy(L.qkv, L.qkv.dense_weight()),
                          dense_copy(L.o, L.o.dense_weight()),
                          {},
                          {}};
    if (width == I) {
      S.gate_up = dense_copy(L.gate_up, L.gate_up.dense_weight());
      S.down = dense_copy(L.down, L.down.dense_weight());
    } else {
      auto keep = mlp_units(L, I, width);
      auto gu = L.gate_up.dense_weight();
      S.gate_up = dense_copy(L.gate_up, at::cat({gu.narrow(0, 0, I).index_select(0, keep),
                                                 gu.narrow(0, I, I).index_select(0, keep)}));
      S.gate_up.parts = {{L.gate_up.parts.at(0).name, width}, {L.gate_up.parts.at(1).name, width}};
      S.down = dense_copy(L.down, L.down.dense_weight().index_select(1, keep));
    }
    out.push_back(std::move(S));
  }
  c.num_layers = static_cast<int64_t>(layers.size());
  c.intermediate_size = width;
  auto embed = teacher.embed().clone();
  model::Linear head = c.tie_embeddings
                           ? model::Linear(embed)
                           : dense_copy(teacher.lm_head(), teacher.lm_head().dense_weight());
  head.parts = teacher.lm_head().parts;
  at::Tensor final_norm;
  for (const auto& [name, t] : teacher.hf_state_dict())
    if (name == "model.norm.weight") final_norm = t.clone();
  SLLM_CHECK(final_norm.defined(), "teacher has no model.norm.weight");
  return std::make_shared<const model::LlamaModel>(c, embed, std::move(out), final_norm,
                                                   std::move(head));
}

void check_same_vocabulary(const tok::Tokenizer& teacher, const model::ModelConfig& tc,
                           const std::string& teacher_path, const tok::Tokenizer& student,
                           const model::ModelConfig& sc, const std::string& student_path) {
  const auto fix =
      "KD compares next-token distributions token by token, so both models need the same "
      "tokenizer: use a student of the teacher's family, or student.init.from_teacher: true";
  SLLM_CHECK(tc.vocab_size == sc.vocab_size,
             "student {} has a vocabulary of {} tokens, teacher {} has {}; {}", student_path,
             sc.vocab_size, teacher_path, tc.vocab_size, fix);
  SLLM_CHECK(teacher.vocab_size() == student.vocab_size(),
             "student {} has a tokenizer of {} tokens, teacher {} has {}; {}", student_path,
             student.vocab_size(), teacher_path, teacher.vocab_size(), fix);
  for (int32_t id = 0; id < teacher.vocab_size(); ++id)
    SLLM_CHECK(teacher.piece(id) == student.piece(id),
               "student {} and teacher {} have different tokenizers (token {} is '{}' in the "
               "teacher, '{}' in the student); {}",
               student_path, teacher_path, id, teacher.piece(id), student.piece(id), fix);
}

}  // namespace sllm::apps
