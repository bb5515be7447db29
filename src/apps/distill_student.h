// Students for `sllm distill`: a smaller decoder cut out of the teacher (a subset of its layers,
// optionally a narrower MLP), and the check that a student and its teacher share one tokenizer.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace sllm::apps {

// student.init.layers: {"every_k": k} keeps layers 0, k, 2k, ...; a list keeps those layers
// (0-based, strictly increasing). Errors name the key and the teacher's layer count.
std::vector<int64_t> student_layers(const nlohmann::json& spec, int64_t teacher_layers);

// A dense copy of the kept layers (weights cloned, so training the student leaves the teacher
// alone), embeddings, final norm and head. intermediate_size > 0 narrows every MLP to the
// intermediate units with the largest weight-norm importance ||gate_j|| * ||up_j|| * ||down_:,j||
// (kept in their original order); 0 keeps the teacher's width.
std::shared_ptr<const model::LlamaModel> student_from_teacher(const model::LlamaModel& teacher,
                                                              const std::vector<int64_t>& layers,
                                                              int64_t intermediate_size);

// Throws one clear error when the two tokenizers or vocabularies differ.
void check_same_vocabulary(const tok::Tokenizer& teacher, const model::ModelConfig& tc,
                           const std::string& teacher_path, const tok::Tokenizer& student,
                           const model::ModelConfig& sc, const std::string& student_path);

}  // namespace sllm::apps
