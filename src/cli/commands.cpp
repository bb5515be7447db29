#include "cli/commands.h"

#include "apps/apps.h"

namespace sllm::cli {
namespace {

std::vector<Flag> model_flags() {
  return {{"-m,--model", "model", "GGUF file or Hugging Face model directory"},
          {"--dtype", "dtype", "weights/activations dtype: fp32, bf16, fp16"},
          {"--device", "device", "cpu, cuda or cuda:N"},
          {"--threads", "threads", "CPU threads (0: libtorch default)"},
          {"--adapter", "adapter", "LoRA adapter directory (PEFT layout) applied to the model"}};
}

std::vector<Flag> train_flags() {
  return {{"--data", "data.train", "training data (JSONL: text, prompt/completion or messages)"},
          {"--eval-data", "data.eval", "evaluation data (JSONL, same formats)"},
          {"--out", "output_dir", "directory of runs (the run goes to <out>/<name>)"},
          {"--name", "run_name", "run name"},
          {"--max-steps", "train.max_steps", "optimizer steps (overrides train.epochs)"},
          {"--epochs", "train.epochs", "passes over the training data"},
          {"--lr", "train.lr", "peak learning rate"},
          {"--batch-size", "train.batch_size", "examples per micro-batch"},
          {"--grad-accum", "train.grad_accum", "micro-batches per optimizer step"},
          {"--task-eval", "task_eval.file", "task file scored before and after training"},
          {"--resume", "train.resume", "continue from a checkpoint: latest, or a directory"},
          {"--skip-bad-lines", "data.skip_bad_lines", "skip (and count) malformed JSONL lines"}};
}

std::vector<Flag> gen_flags() {
  return {{"--ctx", "ctx", "context length per sequence (0: the model's)"},
          {"--temperature", "sampling.temperature", "0 = greedy"},
          {"--top-k", "sampling.top_k", "keep the k most likely tokens (0: off)"},
          {"--top-p", "sampling.top_p", "nucleus sampling mass (1: off)"},
          {"--min-p", "sampling.min_p", "drop tokens below min_p x the best probability"},
          {"--repetition-penalty", "sampling.repetition_penalty", "1: off"},
          {"--seed", "sampling.seed", "random seed"},
          {"-n,--max-new-tokens", "sampling.max_new_tokens", "tokens to generate at most"},
          {"--stop", "sampling.stop", "stop string (repeatable)"},
          {"--ignore-eos", "sampling.ignore_eos", "keep generating past end-of-sequence"},
          {"--max-seqs", "engine.max_seqs", "sequences decoded together"},
          {"--block-size", "engine.block_size", "KV cache block size in tokens"}};
}

std::vector<Flag> join(std::vector<Flag> a, const std::vector<Flag>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

const std::vector<Command>& commands() {
  static const std::vector<Command> cmds = {
      {"generate", "Generate text from a prompt or a JSONL batch of prompts",
       apps::generate_defaults, apps::run_generate,
       join(join(model_flags(), gen_flags()),
            {{"-p,--prompt", "prompt", "prompt text"},
             {"-f,--prompt-file", "prompt_file", "text file (one prompt) or .jsonl (a batch)"},
             {"--system", "system", "system prompt (with the chat template)"},
             {"--chat-template", "chat_template",
              "auto | true | false: wrap the prompt in the model's chat template"},
             {"-o,--output", "output", "write JSONL results here"},
             {"--json", "json", "print results as JSON"}})},
      {"chat", "Interactive multi-turn chat (reads stdin)", apps::chat_defaults, apps::run_chat,
       join(join(model_flags(), gen_flags()), {{"--system", "system", "system prompt"}})},
      {"tokenize", "Show token ids and pieces of a text", apps::tokenize_defaults,
       apps::run_tokenize,
       join(model_flags(), {{"-t,--text", "text", "text to tokenize"},
                            {"--json", "json", "JSON output"},
                            {"--special", "special", "parse special tokens written in the text"}})},
      {"eval", "Perplexity of a text file, or accuracy on a task file", apps::eval_defaults,
       apps::run_eval,
       join(model_flags(),
            {{"--ppl", "ppl", "text file to score (perplexity)"},
             {"--ctx", "ctx", "window length in tokens (perplexity)"},
             {"--kld-ref", "kld_ref",
              "reference model (e.g. the unquantized one): mean KL divergence and same-top-token "
              "% on the --ppl text"},
             {"--task", "task", "JSONL task file: prompt/completion or messages (accuracy)"},
             {"--report", "report", "where the failure report goes (default <task>.eval.md)"},
             {"--limit", "limit", "score only the first N items"},
             {"-n,--max-new-tokens", "max_new_tokens", "answer length limit"},
             {"--chat-template", "chat_template", "auto | true | false, as in training"},
             {"--json", "json", "JSON output"}})},
      {"sft", "Fine-tune: LoRA over a dense base, or full fine-tuning (lora: null)",
       apps::sft_defaults, apps::run_sft, join(model_flags(), train_flags())},
      {"qlora-train", "Fine-tune LoRA adapters over a 4-bit NF4 base (QLoRA)", apps::qlora_defaults,
       apps::run_qlora, join(model_flags(), train_flags())},
      {"merge", "Merge a LoRA adapter into its base: a dense Hugging Face directory",
       apps::merge_defaults, apps::run_merge,
       join(model_flags(), {{"-o,--out", "out", "output directory (must not exist)"}})},
      {"info", "Architecture, tensors, tokenizer and memory of a model", apps::info_defaults,
       apps::run_info,
       join(model_flags(), {{"--ctx", "ctx", "context for the KV estimate (0: the model's)"},
                            {"--batch", "batch", "sequences for the KV estimate"},
                            {"--tensors", "tensors", "list every tensor with its shape and format"},
                            {"--json", "json", "JSON output"}})},
      {"convert", "Write a Hugging Face model directory (safetensors + tokenizer)",
       apps::convert_defaults, apps::run_convert,
       join(model_flags(), {{"-o,--out", "out", "output directory (must not exist)"},
                            {"--dequantize", "dequantize",
                             "write quantized Linears dense (no quantization_config)"}})},
      {"quantize", "Quantize the decoder Linears: GPTQ, AWQ, RTN, LLM.int8() or NF4/FP4",
       apps::quantize_defaults, apps::run_quantize,
       join(model_flags(),
            {{"--method", "method", "rtn | int8 | gptq | awq | nf4 | fp4"},
             {"-o,--out", "out", "output directory (must not exist)"},
             {"--bits", "bits", "rtn: 2, 4, 8; gptq: 2, 4, 8; awq: 4 (0: 4, or 8 for int8)"},
             {"--group-size", "group_size", "input columns per scale (-1: per output channel)"},
             {"--sym", "sym", "true | false: symmetric (no zero points); gptq default true"},
             {"--desc-act", "desc_act",
              "gptq: true | false: act-order, columns in decreasing Hessian diagonal"},
             {"--static-groups", "static_groups",
              "gptq: true | false: group scales from the original weight"},
             {"--true-sequential", "true_sequential",
              "gptq: true | false: re-collect inputs after each sub-block (k,v,q -> o -> up,gate "
              "-> down)"},
             {"--damp", "damp", "gptq: dampening, fraction of the Hessian's mean diagonal"},
             {"--threshold", "threshold", "int8: outlier threshold on |x| (0: none)"},
             {"--calib", "calib", "calibration text (.txt) or dataset (.jsonl) for gptq / awq"},
             {"--calib-samples", "calib_samples", "calibration windows"},
             {"--calib-seqlen", "calib_seqlen", "tokens per calibration window"},
             {"--seed", "seed", "which calibration windows"},
             {"--ppl", "ppl", "text file: perplexity before/after and KL divergence"},
             {"--ctx", "ctx", "perplexity window length"},
             {"--double-quant", "double_quant",
              "nf4/fp4: true | false: also quantize the absmax values"},
             {"--blocksize", "blocksize", "nf4/fp4: elements per absmax block, 64..4096"}})},
  };
  return cmds;
}

}  // namespace sllm::cli
