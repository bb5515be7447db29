// What the public handles of include/sllm/ hold: the internal objects behind the pimpl.
#pragma once

#include <memory>

#include "load/loader.h"
#include "sllm/model.h"

namespace sllm {

struct Model::Impl {
  load::LoadedModel loaded;
  std::string dtype, device;
};

struct Tokenizer::Impl {
  std::shared_ptr<const tok::Tokenizer> tok;
};

}  // namespace sllm
