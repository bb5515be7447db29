// sllm: small language models on your own machine. The public C++ API:
//   Model::load -> Tokenizer, Session (batched, streaming generation), perplexity / evaluate_task,
//   train, quantize. No libtorch types appear here. Errors are thrown as sllm::Error.
// docs/api.md describes the rules of lifetime and threads and shows a complete program.
#pragma once

#include "sllm/error.h"
#include "sllm/eval.h"
#include "sllm/jobs.h"
#include "sllm/model.h"
#include "sllm/session.h"
