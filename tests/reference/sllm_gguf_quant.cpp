// sllm's GGUF quantizers on raw float32 rows, for check_gguf_quant.py (bit parity with the gguf
// Python package's quantize):
//
//   sllm_gguf_quant TYPE ROWS COLS IN_FILE OUT_FILE
//
// IN_FILE: ROWS x COLS little-endian float32. OUT_FILE: the rows as GGML type TYPE (its id: 1 F16,
// 2 Q4_0, 3 Q4_1, 8 Q8_0), as sllm convert --to gguf writes them. Exit 1 with one line on stderr
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

#include "kernels/cpu/gguf_dequant.h"
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
    std::string out;
    switch (type) {
      case 1:
        out.resize(static_cast<size_t>(n) * 2);
        kc::f32_to_f16(x.data(), reinterpret_cast<uint16_t*>(out.data()), n);
        break;
      case 2:
        out.resize(static_cast<size_t>(n / 32 * kc::kQ4_0Bytes));
        kc::quant_q4_0(x.data(), out.data(), n);
        break;
      case 3:
        out.resize(static_cast<size_t>(n / 32 * kc::kQ4_1Bytes));
        kc::quant_q4_1(x.data(), out.data(), n);
        break;
      case 8:
        out.resize(static_cast<size_t>(n / 32 * kc::kQ8_0Bytes));
        kc::quant_q8_0(x.data(), out.data(), n);
        break;
      default:
        throw std::runtime_error("type " + std::to_string(type) + " is not written");
    }
    std::ofstream o(argv[5], std::ios::binary);
    o.write(out.data(), static_cast<std::streamsize>(out.size()));
    return o ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "sllm_gguf_quant: " << e.what() << "\n";
    return 1;
  }
}
