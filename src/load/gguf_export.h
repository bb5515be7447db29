// sllm convert --to gguf: a loaded model as a GGUF v3 file that llama.cpp loads (architecture
// llama for Llama and Mistral, qwen2 for Qwen2; llama.cpp's tensor names and q/k row order, its
// tokenizer keys).
#pragma once

#include <string>

#include "load/loader.h"

namespace sllm::load {

// type: "f32", "f16", "q8_0", "q4_0" or "q4_1" (llama.cpp's file types ALL_F32, MOSTLY_F16,
// MOSTLY_Q8_0, MOSTLY_Q4_0, MOSTLY_Q4_1). Norms and other 1-D tensors stay F32; the token
// embedding (and an untied output head) are Q8_0 for the 4-bit types, the requested type
// otherwise. A Linear already stored in the requested block type is copied block for block.
// The file is written atomically; `path` must not exist.
void save_gguf(const LoadedModel& m, const std::string& path, const std::string& type);

// Checks an export before the model is loaded: the type is one save_gguf writes, `path` does not
// exist and its directory does. Throws sllm::Error saying what to do otherwise.
void check_gguf_export(const std::string& path, const std::string& type);

}  // namespace sllm::load
