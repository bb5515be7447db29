// Load a model, answer a question with streaming output, and score a text's perplexity.
//   embed MODEL [QUESTION]
#include <sllm/sllm.h>

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: embed MODEL.gguf|HF_DIR [QUESTION]\n";
    return 2;
  }
  try {
    const sllm::Model model = sllm::Model::load(argv[1]);  // fp32 on the CPU
    const sllm::ModelInfo info = model.info();
    std::cout << "model: " << info.name << " (" << info.architecture << ", " << info.layers
              << " layers, " << info.parameters << " parameters)\n";

    sllm::GenerationRequest req;
    req.prompt = argc > 2 ? argv[2] : "What is the capital of France?";
    req.chat_template = model.tokenizer().has_chat_template();
    req.sampling.temperature = 0;  // greedy
    req.sampling.max_new_tokens = 24;
    req.on_text = [](std::string_view piece) {  // streamed as it is generated
      std::cout << piece << std::flush;
      return true;  // false would cancel the request
    };
    sllm::Session session(model);
    const sllm::Generation g = session.generate(std::move(req));
    std::cout << "\nfinish: " << g.finish_reason << ", " << g.tokens.size() << " tokens, "
              << g.prompt_tokens << " prompt tokens\n";

    const auto ppl = sllm::perplexity(model, "The quick brown fox jumps over the lazy dog.", 64);
    std::printf("perplexity: %.4f over %lld tokens\n", ppl.perplexity,
                static_cast<long long>(ppl.scored));
  } catch (const sllm::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
