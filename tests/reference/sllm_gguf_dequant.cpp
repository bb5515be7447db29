// sllm's dequantization of raw GGUF blocks, for check_gguf_dequant.py (bit parity with the gguf
// Python package's dequantizers):
//
//   sllm_gguf_dequant TYPE ROWS COLS IN_FILE OUT_FILE
//
// IN_FILE: ROWS rows of COLS elements of GGML type TYPE (its id), as stored. OUT_FILE: the
// [ROWS, COLS] little-endian float32 values of the load-time dequantizer (io::dequantize_to_f32),
// followed, for the types Linears keep as stored (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K),
// by those of ops::gguf_dequantize (the kernels' row dequantizer, which the prefill tiles use) and
// ops::ref::gguf_dequantize (tensor ops). Exit 1 with one
// line on stderr on any error.
#include <ATen/ATen.h>

#include <cstdint>
#include <exception>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "ops/gguf.h"

int main(int argc, char** argv) {
  try {
    if (argc != 6) throw std::runtime_error("usage: sllm_gguf_dequant TYPE ROWS COLS IN OUT");
    const auto type = static_cast<uint32_t>(std::stoul(argv[1]));
    const int64_t rows = std::stoll(argv[2]), cols = std::stoll(argv[3]);
    std::ifstream in(argv[4], std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    sllm::io::TensorView v;
    v.name = argv[4];
    v.dtype = sllm::io::DType::gguf_quant;
    v.ggml_type = type;
    v.shape = {rows, cols};
    v.data = reinterpret_cast<const uint8_t*>(bytes.data());
    v.nbytes = bytes.size();
    std::vector<float> out(static_cast<size_t>(rows * cols));
    sllm::io::dequantize_to_f32(v, out.data());
    std::ofstream o(argv[5], std::ios::binary);
    o.write(reinterpret_cast<const char*>(out.data()),
            static_cast<std::streamsize>(out.size() * 4));
    if (sllm::ops::gguf_linear_type(type)) {
      auto b =
          at::from_blob(bytes.data(), {rows, static_cast<int64_t>(bytes.size()) / rows}, at::kByte)
              .clone();
      auto w = sllm::ops::make_gguf_tensors(b, type, rows, cols);
      for (const auto& t : {sllm::ops::gguf_dequantize(w, at::kFloat),
                            sllm::ops::ref::gguf_dequantize(w, at::kFloat)})
        o.write(reinterpret_cast<const char*>(t.contiguous().data_ptr<float>()),
                static_cast<std::streamsize>(t.numel() * 4));
    }
    return o ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "sllm_gguf_dequant: " << e.what() << "\n";
    return 1;
  }
}
