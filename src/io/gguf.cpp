#include "io/gguf.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "kernels/cpu/gguf_dequant.h"

namespace sllm::io {
namespace {

namespace kc = sllm::kernels::cpu;

struct TypeInfo {
  uint32_t id;
  const char* name;
  int64_t block;
  size_t bytes;
};

// Block layouts of every GGML type that can appear in a GGUF file (ggml.c type_traits).
constexpr TypeInfo kTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},      {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},    {40, "NVFP4", 64, 36},
    {41, "Q1_0", 128, 18},
};

const TypeInfo* type_info(uint32_t t) {
  for (const auto& i : kTypes)
    if (i.id == t) return &i;
  return nullptr;
}

const char* value_type_name(uint32_t t) {
  static constexpr const char* kNames[] = {"UINT8",  "INT8",    "UINT16", "INT16",  "UINT32",
                                           "INT32",  "FLOAT32", "BOOL",   "STRING", "ARRAY",
                                           "UINT64", "INT64",   "FLOAT64"};
  return t < std::size(kNames) ? kNames[t] : "unknown";
}

// Fixed on-disk size of a scalar value type; 0 for STRING/ARRAY, -1 if unknown.
int scalar_size(uint32_t t) {
  switch (static_cast<GgufValueType>(t)) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::BOOL:
      return 1;
    case GgufValueType::UINT16:
    case GgufValueType::INT16:
      return 2;
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::FLOAT32:
      return 4;
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
    case GgufValueType::FLOAT64:
      return 8;
    case GgufValueType::STRING:
    case GgufValueType::ARRAY:
      return 0;
  }
  return -1;
}

// Bounds-checked little-endian cursor over the mapped file. `ctx` names what is being read so
// that a truncation error says which key / tensor info was cut off.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  std::string ctx = "header";
  int64_t elem = -1;  // array element being read, for messages

  void need(uint64_t n) const {
    if (n > remaining()) fail_truncated(fmt::format("{} bytes", n));
  }
  [[noreturn]] void fail_truncated(const std::string& amount) const {
    SLLM_FAIL("GGUF file '{}' is truncated: {}{} needs {} at offset {}, file has {}", path_, ctx,
              elem >= 0 ? fmt::format(" (array element {})", elem) : std::string(), amount, pos_,
              size_);
  }
  [[noreturn]] void fail_corrupt(const std::string& what) const {
    SLLM_FAIL("GGUF file '{}' is corrupt: {}: {}", path_, ctx, what);
  }

  template <class T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string get_string() {
    const uint64_t len = get<uint64_t>();
    need(len);  // also rejects absurd lengths before allocating anything
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

nlohmann::json read_scalar(Reader& r, uint32_t type) {
  switch (static_cast<GgufValueType>(type)) {
    case GgufValueType::UINT8:
      return r.get<uint8_t>();
    case GgufValueType::INT8:
      return r.get<int8_t>();
    case GgufValueType::UINT16:
      return r.get<uint16_t>();
    case GgufValueType::INT16:
      return r.get<int16_t>();
    case GgufValueType::UINT32:
      return r.get<uint32_t>();
    case GgufValueType::INT32:
      return r.get<int32_t>();
    case GgufValueType::FLOAT32:
      return static_cast<double>(r.get<float>());
    case GgufValueType::BOOL: {
      const uint8_t b = r.get<uint8_t>();
      if (b > 1) r.fail_corrupt(fmt::format("bool value {} is neither 0 nor 1", b));
      return b != 0;
    }
    case GgufValueType::STRING:
      return r.get_string();
    case GgufValueType::UINT64:
      return r.get<uint64_t>();
    case GgufValueType::INT64:
      return r.get<int64_t>();
    case GgufValueType::FLOAT64:
      return r.get<double>();
    case GgufValueType::ARRAY:
      break;
  }
  r.fail_corrupt(fmt::format("unknown value type {}", type));
}

nlohmann::json read_value(Reader& r, uint32_t type) {
  if (type != static_cast<uint32_t>(GgufValueType::ARRAY)) {
    if (scalar_size(type) < 0) r.fail_corrupt(fmt::format("unknown value type {}", type));
    return read_scalar(r, type);
  }
  const uint32_t et = r.get<uint32_t>();
  const int es = scalar_size(et);
  if (es < 0) r.fail_corrupt(fmt::format("array has unknown element type {}", et));
  if (et == static_cast<uint32_t>(GgufValueType::ARRAY))
    r.fail_corrupt("nested arrays are not supported");
  const uint64_t n = r.get<uint64_t>();
  const uint64_t min_elem = es > 0 ? static_cast<uint64_t>(es) : 8;  // a string is >= 8 bytes
  if (n > r.remaining() / min_elem)
    r.fail_truncated(
        fmt::format("{} x {} bytes for an array of {} {}", n, min_elem, n, value_type_name(et)));
  nlohmann::json arr = nlohmann::json::array();
  arr.get_ref<nlohmann::json::array_t&>().reserve(static_cast<size_t>(n));
  for (uint64_t i = 0; i < n; ++i) {
    r.elem = static_cast<int64_t>(i);
    arr.push_back(read_scalar(r, et));
  }
  r.elem = -1;
  return arr;
}

DType dtype_for_ggml(uint32_t t) {
  switch (static_cast<GgmlType>(t)) {
    case GgmlType::F32:
      return DType::f32;
    case GgmlType::F16:
      return DType::f16;
    case GgmlType::BF16:
      return DType::bf16;
    case GgmlType::F64:
      return DType::f64;
    case GgmlType::I8:
      return DType::i8;
    case GgmlType::I16:
      return DType::i16;
    case GgmlType::I32:
      return DType::i32;
    case GgmlType::I64:
      return DType::i64;
    default:
      return DType::gguf_quant;
  }
}

std::string json_type_name(const nlohmann::json& j) {
  if (j.is_number_unsigned() || j.is_number_integer()) return "integer";
  if (j.is_number_float()) return "float";
  return j.type_name();
}

}  // namespace

std::string ggml_type_name(uint32_t t) {
  if (const auto* i = type_info(t)) return i->name;
  return fmt::format("type#{}", t);
}

bool ggml_type_layout(uint32_t t, int64_t& block_elems, size_t& block_bytes) {
  const auto* i = type_info(t);
  if (!i) return false;
  block_elems = i->block;
  block_bytes = i->bytes;
  return true;
}

bool ggml_type_dequant_supported(uint32_t t) {
  switch (static_cast<GgmlType>(t)) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::F64:
    case GgmlType::I8:
    case GgmlType::I16:
    case GgmlType::I32:
    case GgmlType::I64:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q8_0:
    case GgmlType::Q8_1:
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::Q8_K:
    case GgmlType::IQ4_NL:
    case GgmlType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

GgufFile GgufFile::open(const std::string& path, bool with_data) {
  GgufFile g;
  g.file_ = std::make_shared<MappedFile>(path);
  g.path_ = path;
  const uint8_t* base = g.file_->data();
  const size_t size = g.file_->size();
  Reader r(base, size, g.path_);

  // ---- header ----
  if (size < 4 || std::memcmp(base, "GGUF", 4) != 0)
    SLLM_FAIL("'{}' is not a GGUF file (it does not start with the magic bytes 'GGUF')", path);
  r.get<uint32_t>();
  const uint32_t version = r.get<uint32_t>();
  if (version != 2 && version != 3) {
    if ((version & 0xFFFFu) == 0 && (version >> 16) != 0)
      SLLM_FAIL(
          "GGUF file '{}' looks big-endian (version field {:#x}); only little-endian GGUF is "
          "supported",
          path, version);
    SLLM_FAIL("GGUF file '{}' has version {}; only versions 2 and 3 are supported", path, version);
  }
  g.version_ = version;
  const uint64_t n_tensors = r.get<uint64_t>();
  const uint64_t n_kv = r.get<uint64_t>();
  // Cheapest possible entries: a key/value is >= 13 bytes, a tensor info >= 24 bytes.
  if (n_kv > r.remaining() / 13)
    SLLM_FAIL(
        "GGUF file '{}' is truncated or corrupt: header declares {} metadata entries but only {} "
        "bytes follow",
        path, n_kv, r.remaining());
  if (n_tensors > r.remaining() / 24)
    SLLM_FAIL(
        "GGUF file '{}' is truncated or corrupt: header declares {} tensors but only {} bytes "
        "follow",
        path, n_tensors, r.remaining());

  // ---- metadata ----
  for (uint64_t i = 0; i < n_kv; ++i) {
    r.ctx = fmt::format("metadata entry {}", i);
    std::string key = r.get_string();
    r.ctx = fmt::format("metadata entry {} ('{}')", i, key);
    const uint32_t type = r.get<uint32_t>();
    if (g.metadata_.contains(key)) r.fail_corrupt("duplicate key");
    nlohmann::json v = read_value(r, type);
    g.value_types_.emplace(key, static_cast<GgufValueType>(type));
    g.metadata_[key] = std::move(v);
  }

  // ---- alignment ----
  if (auto it = g.metadata_.find("general.alignment"); it != g.metadata_.end()) {
    if (!it->is_number_integer())
      SLLM_FAIL("GGUF file '{}' is corrupt: general.alignment has type {}, expected an integer",
                path, json_type_name(*it));
    const int64_t a = it->is_number_unsigned() && it->get<uint64_t>() > (uint64_t{1} << 30)
                          ? -1
                          : it->get<int64_t>();
    if (a <= 0 || a > (int64_t{1} << 30) || (a & (a - 1)) != 0)
      SLLM_FAIL(
          "GGUF file '{}' is corrupt: general.alignment = {} is not a power of two in [1, 2^30]",
          path, it->dump());
    g.alignment_ = static_cast<size_t>(a);
  }

  // ---- tensor infos ----
  struct Raw {
    uint64_t offset;
  };
  std::vector<Raw> raw;
  raw.reserve(static_cast<size_t>(n_tensors));
  g.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    r.ctx = fmt::format("tensor info {}", i);
    TensorView t;
    t.name = r.get_string();
    r.ctx = fmt::format("tensor info {} ('{}')", i, t.name);
    const uint32_t n_dims = r.get<uint32_t>();
    if (n_dims > 8) r.fail_corrupt(fmt::format("n_dims = {} (at most 8 supported)", n_dims));
    r.need(uint64_t{8} * n_dims + 12);  // dims + type + offset
    std::vector<int64_t> ne(n_dims);
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t v = r.get<uint64_t>();
      if (v == 0 || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        r.fail_corrupt(fmt::format("dimension {} is {}", d, v));
      ne[d] = static_cast<int64_t>(v);
      if (numel > std::numeric_limits<int64_t>::max() / ne[d])
        r.fail_corrupt(fmt::format("element count overflows (ne = [{}])",
                                   fmt::join(ne.begin(), ne.begin() + d + 1, ", ")));
      numel *= ne[d];
    }
    t.ggml_type = r.get<uint32_t>();
    const uint64_t offset = r.get<uint64_t>();
    const TypeInfo* ti = type_info(t.ggml_type);
    if (!ti) r.fail_corrupt(fmt::format("unknown tensor type id {}", t.ggml_type));
    const int64_t row = n_dims > 0 ? ne[0] : 1;
    if (row % ti->block != 0)
      r.fail_corrupt(fmt::format("row length ne[0] = {} is not a multiple of the {} block size {}",
                                 row, ti->name, ti->block));
    const uint64_t blocks = static_cast<uint64_t>(numel / ti->block);
    if (blocks > std::numeric_limits<uint64_t>::max() / ti->bytes)
      r.fail_corrupt(fmt::format("byte size overflows ({} blocks of {} bytes)", blocks, ti->bytes));
    t.nbytes = static_cast<size_t>(blocks * ti->bytes);
    t.dtype = dtype_for_ggml(t.ggml_type);
    t.shape.assign(ne.rbegin(), ne.rend());
    if (g.index_.count(t.name)) r.fail_corrupt("duplicate tensor name");
    g.index_.emplace(t.name, g.tensors_.size());
    g.tensors_.push_back(std::move(t));
    raw.push_back({offset});
  }

  // ---- data section ----
  const uint64_t end_of_infos = r.pos();
  g.data_offset_ =
      static_cast<size_t>((end_of_infos + g.alignment_ - 1) / g.alignment_ * g.alignment_);
  if (!with_data) return g;
  if (!g.tensors_.empty() && g.data_offset_ > size)
    SLLM_FAIL("GGUF file '{}' is truncated: tensor data section starts at offset {}, file has {}",
              path, g.data_offset_, size);
  const uint64_t data_size = g.data_offset_ <= size ? size - g.data_offset_ : 0;
  std::vector<size_t> order(g.tensors_.size());
  for (size_t i = 0; i < g.tensors_.size(); ++i) {
    auto& t = g.tensors_[i];
    const uint64_t off = raw[i].offset;
    if (off % g.alignment_ != 0)
      SLLM_FAIL(
          "GGUF file '{}' is corrupt: tensor {} ('{}') data offset {} is not a multiple of the "
          "alignment {}",
          path, i, t.name, off, g.alignment_);
    if (off > data_size || t.nbytes > data_size - off)
      SLLM_FAIL(
          "GGUF file '{}' is truncated: tensor {} ('{}', {} [{}]) needs {} bytes at offset {}, "
          "file has {}",
          path, i, t.name, ggml_type_name(t.ggml_type), fmt::join(t.shape, ", "), t.nbytes,
          g.data_offset_ + off, size);
    t.data = base + g.data_offset_ + off;
    order[i] = i;
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return raw[a].offset < raw[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const size_t a = order[k - 1], b = order[k];
    if (raw[a].offset + g.tensors_[a].nbytes > raw[b].offset)
      SLLM_FAIL(
          "GGUF file '{}' is corrupt: tensor data of '{}' (offset {}, {} bytes) overlaps '{}' "
          "(offset {})",
          path, g.tensors_[a].name, raw[a].offset, g.tensors_[a].nbytes, g.tensors_[b].name,
          raw[b].offset);
  }
  return g;
}

GgufValueType GgufFile::value_type(const std::string& key) const {
  auto it = value_types_.find(key);
  SLLM_CHECK(it != value_types_.end(), "GGUF file '{}': metadata key '{}' is missing", path_, key);
  return it->second;
}

const TensorView* GgufFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::string GgufFile::get_string(const std::string& key) const {
  auto it = metadata_.find(key);
  SLLM_CHECK(it != metadata_.end(), "GGUF file '{}': metadata key '{}' is missing", path_, key);
  SLLM_CHECK(it->is_string(), "GGUF file '{}': metadata key '{}' has type {}, expected a string",
             path_, key, json_type_name(*it));
  return it->get<std::string>();
}

int64_t GgufFile::get_int(const std::string& key) const {
  auto it = metadata_.find(key);
  SLLM_CHECK(it != metadata_.end(), "GGUF file '{}': metadata key '{}' is missing", path_, key);
  SLLM_CHECK(it->is_number_integer(),
             "GGUF file '{}': metadata key '{}' has type {}, expected an integer", path_, key,
             json_type_name(*it));
  if (it->is_number_unsigned()) {
    const uint64_t v = it->get<uint64_t>();
    SLLM_CHECK(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
               "GGUF file '{}': metadata key '{}' = {} does not fit a signed 64-bit integer", path_,
               key, v);
    return static_cast<int64_t>(v);
  }
  return it->get<int64_t>();
}

double GgufFile::get_float(const std::string& key) const {
  auto it = metadata_.find(key);
  SLLM_CHECK(it != metadata_.end(), "GGUF file '{}': metadata key '{}' is missing", path_, key);
  SLLM_CHECK(it->is_number(), "GGUF file '{}': metadata key '{}' has type {}, expected a number",
             path_, key, json_type_name(*it));
  return it->get<double>();
}

std::string GgufFile::get_string_or(const std::string& key, const std::string& def) const {
  return has(key) ? get_string(key) : def;
}
int64_t GgufFile::get_int_or(const std::string& key, int64_t def) const {
  return has(key) ? get_int(key) : def;
}
double GgufFile::get_float_or(const std::string& key, double def) const {
  return has(key) ? get_float(key) : def;
}

void dequantize_to_f32(const TensorView& t, float* dst) {
  int64_t n = 1;
  for (int64_t s : t.shape) {
    SLLM_CHECK(s >= 0, "tensor '{}' has a negative dimension in shape [{}]", t.name,
               fmt::join(t.shape, ", "));
    SLLM_CHECK(s == 0 || n <= std::numeric_limits<int64_t>::max() / s,
               "tensor '{}': shape [{}] overflows", t.name, fmt::join(t.shape, ", "));
    n *= s;
  }
  if (t.dtype == DType::gguf_quant) {
    const TypeInfo* ti = type_info(t.ggml_type);
    SLLM_CHECK(
        ti && ggml_type_dequant_supported(t.ggml_type),
        "tensor '{}' has GGML type {} (id {}), which cannot be dequantized (supported: F32, F16, "
        "BF16, F64, I8-I64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K-Q6_K, Q8_K, IQ4_NL, IQ4_XS)",
        t.name, ggml_type_name(t.ggml_type), t.ggml_type);
    SLLM_CHECK(n % ti->block == 0,
               "tensor '{}' ({}): {} elements is not a multiple of the block size {}", t.name,
               ti->name, n, ti->block);
    SLLM_CHECK(static_cast<uint64_t>(n / ti->block) * ti->bytes == t.nbytes,
               "tensor '{}' ({} [{}]) has {} bytes, expected {}", t.name, ti->name,
               fmt::join(t.shape, ", "), t.nbytes,
               static_cast<uint64_t>(n / ti->block) * ti->bytes);
    if (n == 0) return;
    SLLM_CHECK(t.data != nullptr, "tensor '{}' has no data", t.name);
    const void* s = t.data;
    switch (static_cast<GgmlType>(t.ggml_type)) {
      case GgmlType::Q4_0:
        kc::dequant_q4_0(s, dst, n);
        return;
      case GgmlType::Q4_1:
        kc::dequant_q4_1(s, dst, n);
        return;
      case GgmlType::Q5_0:
        kc::dequant_q5_0(s, dst, n);
        return;
      case GgmlType::Q5_1:
        kc::dequant_q5_1(s, dst, n);
        return;
      case GgmlType::Q8_0:
        kc::dequant_q8_0(s, dst, n);
        return;
      case GgmlType::Q8_1:
        kc::dequant_q8_1(s, dst, n);
        return;
      case GgmlType::Q2_K:
        kc::dequant_q2_k(s, dst, n);
        return;
      case GgmlType::Q3_K:
        kc::dequant_q3_k(s, dst, n);
        return;
      case GgmlType::Q4_K:
        kc::dequant_q4_k(s, dst, n);
        return;
      case GgmlType::Q5_K:
        kc::dequant_q5_k(s, dst, n);
        return;
      case GgmlType::Q6_K:
        kc::dequant_q6_k(s, dst, n);
        return;
      case GgmlType::Q8_K:
        kc::dequant_q8_k(s, dst, n);
        return;
      case GgmlType::IQ4_NL:
        kc::dequant_iq4_nl(s, dst, n);
        return;
      case GgmlType::IQ4_XS:
        kc::dequant_iq4_xs(s, dst, n);
        return;
      default:
        break;
    }
    // Plain element types tagged gguf_quant: fall through to the dtype path below.
    TensorView plain = t;
    plain.dtype = dtype_for_ggml(t.ggml_type);
    SLLM_CHECK(plain.dtype != DType::gguf_quant, "tensor '{}': GGML type {} cannot be dequantized",
               t.name, ggml_type_name(t.ggml_type));
    dequantize_to_f32(plain, dst);
    return;
  }

  const size_t es = dtype_size(t.dtype);
  SLLM_CHECK(es > 0, "tensor '{}' has dtype {}, which cannot be converted to F32", t.name,
             dtype_name(t.dtype));
  SLLM_CHECK(static_cast<uint64_t>(n) * es == t.nbytes,
             "tensor '{}' ({} [{}]) has {} bytes, expected {}", t.name, dtype_name(t.dtype),
             fmt::join(t.shape, ", "), t.nbytes, static_cast<uint64_t>(n) * es);
  if (n == 0) return;
  SLLM_CHECK(t.data != nullptr, "tensor '{}' has no data", t.name);
  const uint8_t* p = t.data;
  auto convert = [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, p + i * sizeof(T), sizeof(T));
      dst[i] = static_cast<float>(v);
    }
  };
  switch (t.dtype) {
    case DType::f32:
      std::memcpy(dst, p, t.nbytes);
      return;
    case DType::f16:
      kc::f16_to_f32(reinterpret_cast<const uint16_t*>(p), dst, n);
      return;
    case DType::bf16:
      kc::bf16_to_f32(reinterpret_cast<const uint16_t*>(p), dst, n);
      return;
    case DType::f64:
      convert(double{});
      return;
    case DType::i8:
      convert(int8_t{});
      return;
    case DType::u8:
      convert(uint8_t{});
      return;
    case DType::i16:
      convert(int16_t{});
      return;
    case DType::u16:
      convert(uint16_t{});
      return;
    case DType::i32:
      convert(int32_t{});
      return;
    case DType::u32:
      convert(uint32_t{});
      return;
    case DType::i64:
      convert(int64_t{});
      return;
    case DType::u64:
      convert(uint64_t{});
      return;
    case DType::boolean:
      for (int64_t i = 0; i < n; ++i) dst[i] = p[i] != 0 ? 1.0f : 0.0f;
      return;
    default:
      break;
  }
  SLLM_FAIL("tensor '{}' has dtype {}, which cannot be converted to F32", t.name,
            dtype_name(t.dtype));
}

}  // namespace sllm::io
