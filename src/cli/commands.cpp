#include "cli/commands.h"

#include "apps/apps.h"

namespace sllm::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> cmds = {
      {"generate", "Generate text from a prompt or a JSONL batch of prompts",
       apps::generate_options, apps::run_generate},
      {"chat", "Interactive multi-turn chat (reads stdin)", apps::chat_options, apps::run_chat},
      {"tokenize", "Show token ids and pieces of a text", apps::tokenize_options,
       apps::run_tokenize},
      {"eval", "Perplexity of a text file, or accuracy on a task file", apps::eval_options,
       apps::run_eval},
      {"sft", "Fine-tune: LoRA over a dense base, or full fine-tuning (lora: null)",
       apps::sft_options, apps::run_sft},
      {"qlora-train", "Fine-tune LoRA adapters over a 4-bit NF4 base (QLoRA)", apps::qlora_options,
       apps::run_qlora},
      {"distill", "Distill a teacher into a smaller student (logit or sequence-level KD)",
       apps::distill_options, apps::run_distill},
      {"merge", "Merge a LoRA adapter into its base: a dense Hugging Face directory",
       apps::merge_options, apps::run_merge},
      {"info", "Architecture, tensors, tokenizer and memory of a model", apps::info_options,
       apps::run_info},
      {"convert", "Write a Hugging Face model directory (safetensors + tokenizer)",
       apps::convert_options, apps::run_convert},
      {"quantize", "Quantize the decoder Linears: GPTQ, AWQ, RTN, LLM.int8() or NF4/FP4",
       apps::quantize_options, apps::run_quantize},
      {"bench", "Compare models on the same prompts: latency, tokens/s, memory, quality",
       apps::bench_options, apps::run_bench},
      {"serve", "HTTP server with the OpenAI and Text Generation Inference APIs",
       apps::serve_options, apps::run_serve},
  };
  return cmds;
}

}  // namespace sllm::cli
