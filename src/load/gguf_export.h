// sllm convert --to gguf: a loaded model as a GGUF v3 file that llama.cpp loads (architecture
// llama for Llama and Mistral, qwen2 for Qwen2; llama.cpp's tensor names and q/k row order, its
// tokenizer keys).
#pragma once

#include <string>

#include "load/loader.h"

namespace sllm::load {

// type: "f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1" (the Linears in that type), "q4_k",
// "q5_k", "q6_k" (the Linears in that K type) or "q4_k_m" (llama.cpp's Q4_K_M mix). Norms and
// other 1-D tensors stay F32; the token embedding and output head are Q8_0 for the legacy 4/5-bit
// types; under the K types the head (or a tied embedding) is Q6_K and an untied embedding the
// requested type, as llama.cpp's quantize picks them, with its fallbacks for rows that are not
// whole 256-element super-blocks (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0). A Linear already
// stored in the chosen block type is copied block for block. The file is written atomically;
// `path` must not exist.
void save_gguf(const LoadedModel& m, const std::string& path, const std::string& type);

// Checks an export before the model is loaded: the type is one save_gguf writes, `path` does not
// exist and its directory does. Throws sllm::Error saying what to do otherwise.
void check_gguf_export(const std::string& path, const std::string& type);

}  // namespace sllm::load
