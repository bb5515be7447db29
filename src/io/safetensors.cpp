#include "io/safetensors.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "core/error.h"
#include "io/atomic_write.h"

namespace fs = std::filesystem;

namespace sllm::io {
namespace {

constexpr uint64_t kMaxHeader = uint64_t{100} << 20;  // same limit as the reference implementation
constexpr int kMaxJsonDepth = 64;

// Rejects pathological nesting before handing the header to the JSON parser.
bool json_depth_ok(const char* p, size_t n) {
  int depth = 0;
  bool in_str = false, esc = false;
  for (size_t i = 0; i < n; ++i) {
    const char c = p[i];
    if (in_str) {
      if (esc)
        esc = false;
      else if (c == '\\')
        esc = true;
      else if (c == '"')
        in_str = false;
    } else if (c == '"') {
      in_str = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

// Printable, single-line, bounded excerpt of an untrusted name for error messages.
std::string quote(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 200; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out += static_cast<char>(c);
  }
  if (s.size() > 200) out += "...";
  return out;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.file_ = std::make_shared<MappedFile>(path);
  f.path_ = path;
  const uint8_t* base = f.file_->data();
  const uint64_t size = f.file_->size();

  if (size < 8)
    SLLM_FAIL(
        "safetensors file '{}' is truncated: needs 8 bytes for the header length, file has {}",
        path, size);
  uint64_t hlen;
  std::memcpy(&hlen, base, 8);
  if (hlen > size - 8)
    SLLM_FAIL("safetensors file '{}' is truncated: header needs {} bytes at offset 8, file has {}",
              path, hlen, size);
  if (hlen > kMaxHeader)
    SLLM_FAIL("safetensors file '{}' is corrupt: header length {} exceeds the {} byte limit", path,
              hlen, kMaxHeader);
  const char* hp = reinterpret_cast<const char*>(base + 8);
  if (hlen == 0 || hp[0] != '{')
    SLLM_FAIL(
        "safetensors file '{}' is corrupt: header is not a JSON object (it must start with '{{')",
        path);
  if (!json_depth_ok(hp, hlen))
    SLLM_FAIL("safetensors file '{}' is corrupt: header JSON is nested deeper than {}", path,
              kMaxJsonDepth);
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(hp, hp + hlen);
  } catch (const nlohmann::json::exception& e) {
    SLLM_FAIL("safetensors file '{}' has an invalid JSON header: {}", path, e.what());
  }
  if (!h.is_object())
    SLLM_FAIL("safetensors file '{}' is corrupt: header is not a JSON object", path);

  const uint8_t* buf = base + 8 + hlen;
  const uint64_t buf_size = size - 8 - hlen;
  struct Range {
    uint64_t begin, end;
  };
  std::vector<Range> ranges;
  for (const auto& [name, v] : h.items()) {
    if (name == "__metadata__") {
      if (!v.is_object())
        SLLM_FAIL("safetensors file '{}' is corrupt: __metadata__ is a {}, expected an object",
                  path, v.type_name());
      for (const auto& [k, mv] : v.items()) {
        if (!mv.is_string())
          SLLM_FAIL(
              "safetensors file '{}' is corrupt: __metadata__ value '{}' is a {}, expected a "
              "string",
              path, quote(k), mv.type_name());
        f.metadata_[k] = mv.get<std::string>();
      }
      continue;
    }
    const std::string qn = quote(name);
    auto bad = [&](const std::string& what) {
      SLLM_FAIL("safetensors file '{}' is corrupt: tensor '{}': {}", path, qn, what);
    };
    if (!v.is_object()) bad(fmt::format("entry is a {}, expected an object", v.type_name()));
    TensorView t;
    t.name = name;
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) bad("missing or non-string \"dtype\"");
    if (!dtype_from_name(dt->get<std::string>(), t.dtype))
      bad(fmt::format("unknown dtype '{}'", quote(dt->get<std::string>())));
    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) bad("missing or non-array \"shape\"");
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned())
        bad(fmt::format("shape entry {} is not a non-negative integer", d.dump()));
      const uint64_t x = d.get<uint64_t>();
      if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (x != 0 && numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / x))
        bad(fmt::format("shape {} overflows", sh->dump()));
      numel *= x;
      t.shape.push_back(static_cast<int64_t>(x));
    }
    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      bad("\"data_offsets\" must be [begin, end] with non-negative integers");
    const uint64_t b = (*off)[0].get<uint64_t>(), e = (*off)[1].get<uint64_t>();
    if (b > e) bad(fmt::format("data_offsets [{}, {}] are reversed", b, e));
    if (e > buf_size)
      SLLM_FAIL(
          "safetensors file '{}' is truncated: tensor '{}' needs bytes [{}, {}) of the data buffer "
          "at "
          "offset {}, which has {} bytes (file has {})",
          path, qn, b, e, 8 + hlen, buf_size, size);
    const uint64_t es = dtype_size(t.dtype);
    if (numel > std::numeric_limits<uint64_t>::max() / es || numel * es != e - b)
      bad(fmt::format("shape {} of {} needs {} bytes but data_offsets [{}, {}] span {}", sh->dump(),
                      dtype_name(t.dtype),
                      numel > std::numeric_limits<uint64_t>::max() / es
                          ? std::string("too many")
                          : std::to_string(numel * es),
                      b, e, e - b));
    t.data = buf + b;
    t.nbytes = static_cast<size_t>(e - b);
    f.tensors_.push_back(std::move(t));
    ranges.push_back({b, e});
  }

  // Sort by offset (file order) and reject overlaps.
  std::vector<size_t> order(f.tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return ranges[a].begin != ranges[b].begin ? ranges[a].begin < ranges[b].begin
                                              : ranges[a].end < ranges[b].end;
  });
  for (size_t k = 1; k < order.size(); ++k) {
    const auto& ra = ranges[order[k - 1]];
    const auto& rb = ranges[order[k]];
    if (rb.begin < ra.end)
      SLLM_FAIL(
          "safetensors file '{}' is corrupt: tensor '{}' [{}, {}) overlaps tensor '{}' [{}, {})",
          path, quote(f.tensors_[order[k - 1]].name), ra.begin, ra.end,
          quote(f.tensors_[order[k]].name), rb.begin, rb.end);
  }
  std::vector<TensorView> sorted;
  sorted.reserve(order.size());
  for (size_t i : order) sorted.push_back(std::move(f.tensors_[i]));
  f.tensors_ = std::move(sorted);
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  std::unordered_set<std::string> names;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    SLLM_CHECK(!t.name.empty(), "cannot write '{}': a tensor has an empty name", path);
    SLLM_CHECK(t.name != "__metadata__",
               "cannot write '{}': '__metadata__' is not a valid tensor name", path);
    SLLM_CHECK(names.insert(t.name).second, "cannot write '{}': duplicate tensor name '{}'", path,
               t.name);
    const size_t es = dtype_size(t.dtype);
    SLLM_CHECK(es > 0 && t.dtype != DType::gguf_quant,
               "cannot write '{}': tensor '{}' has dtype {}, which safetensors cannot store", path,
               t.name, dtype_name(t.dtype));
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      SLLM_CHECK(d >= 0, "cannot write '{}': tensor '{}' has a negative dimension in [{}]", path,
                 t.name, fmt::join(t.shape, ", "));
      SLLM_CHECK(
          d == 0 || numel <= std::numeric_limits<uint64_t>::max() / es / static_cast<uint64_t>(d),
          "cannot write '{}': tensor '{}' shape [{}] overflows", path, t.name,
          fmt::join(t.shape, ", "));
      numel *= static_cast<uint64_t>(d);
    }
    SLLM_CHECK(numel * es == t.nbytes,
               "cannot write '{}': tensor '{}' ({} [{}]) has {} bytes, expected {}", path, t.name,
               dtype_name(t.dtype), fmt::join(t.shape, ", "), t.nbytes, numel * es);
    SLLM_CHECK(t.nbytes == 0 || t.data != nullptr, "cannot write '{}': tensor '{}' has no data",
               path, t.name);
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = dtype_name(t.dtype);
    e["shape"] = t.shape;
    e["data_offsets"] = {offset, offset + t.nbytes};
    h[t.name] = std::move(e);
    offset += t.nbytes;
  }
  std::string header;
  try {
    header = h.dump();
  } catch (const nlohmann::json::exception& e) {
    SLLM_FAIL("cannot write '{}': tensor names and metadata must be valid UTF-8 ({})", path,
              e.what());
  }
  header.append((8 - header.size() % 8) % 8, ' ');
  const uint64_t hlen = header.size();
  uint8_t len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<uint8_t>(hlen >> (8 * i));

  detail::AtomicFile out(path);
  out.write(len_bytes, 8);
  out.write(header.data(), header.size());
  for (const auto& t : tensors)
    if (t.nbytes) out.write(t.data, t.nbytes);
  out.commit();
}

SafetensorsSet SafetensorsSet::open_dir(const std::string& dir) {
  std::error_code ec;
  SLLM_CHECK(fs::is_directory(dir, ec), "'{}' is not a directory", dir);
  SafetensorsSet s;
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single = fs::path(dir) / "model.safetensors";
  if (fs::exists(index, ec)) {
    const std::string ipath = index.string();
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(ipath));
    } catch (const nlohmann::json::exception& e) {
      SLLM_FAIL("'{}' is not valid JSON: {}", ipath, e.what());
    }
    SLLM_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
               "'{}' has no \"weight_map\" object", ipath);
    const auto& wm = j["weight_map"];
    std::map<std::string, size_t> shard_index;  // file name -> files_ index
    for (const auto& [name, file] : wm.items()) {
      SLLM_CHECK(file.is_string(), "'{}': weight_map entry '{}' is a {}, expected a file name",
                 ipath, quote(name), file.type_name());
      const std::string fname = file.get<std::string>();
      const fs::path rel(fname);
      bool ok = !fname.empty() && rel.is_relative();
      for (const auto& part : rel) ok = ok && part != "..";
      SLLM_CHECK(ok,
                 "'{}': weight_map entry '{}' names '{}', which is not a file inside the directory",
                 ipath, quote(name), quote(fname));
      shard_index.emplace(fname, 0);
    }
    SLLM_CHECK(!shard_index.empty(), "'{}': weight_map is empty", ipath);
    for (auto& [fname, idx] : shard_index) {
      idx = s.files_.size();
      s.files_.push_back(SafetensorsFile::open((fs::path(dir) / fname).string()));
    }
    for (const auto& [name, file] : wm.items()) {
      const std::string fname = file.get<std::string>();
      const SafetensorsFile& shard = s.files_[shard_index.at(fname)];
      const TensorView* t = shard.find(name);
      SLLM_CHECK(t, "'{}' maps tensor '{}' to '{}', but that shard has no such tensor", ipath,
                 quote(name), shard.path());
      s.by_name_.emplace(name, t);
    }
    return s;
  }
  SLLM_CHECK(fs::exists(single, ec),
             "'{}' has neither model.safetensors nor model.safetensors.index.json", dir);
  s.files_.push_back(SafetensorsFile::open(single.string()));
  for (const auto& t : s.files_.back().tensors()) s.by_name_.emplace(t.name, &t);
  return s;
}

const TensorView* SafetensorsSet::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<const TensorView*> SafetensorsSet::all() const {
  std::vector<const TensorView*> out;
  out.reserve(by_name_.size());
  for (const auto& [name, t] : by_name_) out.push_back(t);
  return out;
}

}  // namespace sllm::io
