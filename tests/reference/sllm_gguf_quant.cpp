// sllm's GGUF quantizers on raw float32 rows, for check_gguf_quant.py (bit parity with the gguf
// Python package's quantize):
//
//   sllm_gguf_quant TYPE ROWS COLS IN_FILE OUT_FILE
//
// IN_FILE: ROWS x COLS little-endian float32. OUT_FILE: the rows as GGML type TYPE (its id: 1 F16,
// 2 Q4_0, 3 Q4_1, 6 Q5_0, 7 Q5_1, 8 Q8_0, 12 Q4_K, 13 Q5_K, 14 Q6_K; COLS a multiple of 256 for
// the K types), as sllm convert --to gguf writes them. Exit 1 with one line on stderr
// on any error.
#include <cstdint>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/gguf_quant.h"

namespace kc = sllm::kernels::cpu;

int main(int argc, char** argv) {
  try {
    if (argc != 6) throw std::runtime_error("usage: sllm_gguf_quant TYPE ROWS COLS IN OUT");
    const int type = std::stoi(argv[1]);
    const int64_t rows = std::stoll(argv[2]), cols = std::stoll(argv[3]), n = rows * cols;
    std::ifstream in(argv[4], std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (static_cast<int64_t>(bytes.size()) != n * 4) throw std::runtime_error("input size");
    std::vector<float> x(static_cast<size_t>(n));
    std::memcpy(x.data(), bytes.data(), bytes.size());
    const int64_t bytes_out = kc::quant_bytes(static_cast<uint32_t>(type), n);
    if (bytes_out < 0) throw std::runtime_error("type " + std::to_string(type) + " is not written");
    std::string out(static_cast<size_t>(bytes_out), '\0');
    kc::quantize(static_cast<uint32_t>(type), x.data(), out.data(), n);
    std::ofstream o(argv[5], std::ios::binary);
    o.write(out.data(), static_cast<std::streamsize>(out.size()));
    return o ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "sllm_gguf_quant: " << e.what() << "\n";
    return 1;
  }
}
