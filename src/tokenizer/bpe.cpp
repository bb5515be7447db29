#include "tokenizer/bpe.h"

#include <utf8proc.h>

#include <cstdlib>

#include <algorithm>
#include <queue>

#include "core/error.h"
#include "core/log.h"

namespace sllm::tok {

// ---------------------------------------------------------------- GPT-2 byte mapping

namespace {

struct ByteMap {
  std::array<std::string, 256> to_unicode;  // byte -> UTF-8 of its code point
  std::array<int16_t, 324> from_cp{};       // code point -> byte, -1 if none
  ByteMap() {
    from_cp.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      // Printable Latin-1 bytes stand for themselves; the rest go to 256 + n in order.
      bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      uint32_t cp = keep ? b : 256 + n++;
      utf8_append(to_unicode[b], cp);
      from_cp[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

std::string bytes_to_unicode(std::string_view bytes) {
  const auto& m = byte_map();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += m.to_unicode[b];
  return out;
}

bool unicode_to_bytes(std::string_view piece, std::string* out) {
  const auto& m = byte_map();
  out->clear();
  for (size_t i = 0; i < piece.size();) {
    int l = utf8_char_len(piece, i);
    if (l == 0) return false;
    uint32_t cp = utf8_decode(piece, i, l);
    if (cp >= m.from_cp.size() || m.from_cp[cp] < 0) return false;
    *out += static_cast<char>(m.from_cp[cp]);
    i += l;
  }
  return true;
}

// ---------------------------------------------------------------- stop ids

const std::vector<std::string> kStopTokenTexts = {"<|im_end|>",    "<|eot_id|>", "<|end_of_text|>",
                                                  "<|endoftext|>", "</s>",       "<|eom_id|>",
                                                  "<end_of_turn>", "<|end|>"};

void fill_stop_ids(Tokenizer& t) {
  t.stop_ids.clear();
  if (t.eos_id >= 0) t.stop_ids.push_back(t.eos_id);
  for (const auto& s : kStopTokenTexts) {
    auto id = t.token_to_id(s);
    if (id && t.is_special(*id) &&
        std::find(t.stop_ids.begin(), t.stop_ids.end(), *id) == t.stop_ids.end())
      t.stop_ids.push_back(*id);
  }
}

// ---------------------------------------------------------------- BpeTokenizer

BpeTokenizer::BpeTokenizer(BpeData d) : d_(std::move(d)) {
  const int32_t n = static_cast<int32_t>(d_.pieces.size());
  SLLM_CHECK(n > 0, "tokenizer: empty vocabulary");
  if (d_.kinds.size() != d_.pieces.size()) d_.kinds.resize(d_.pieces.size(), TokenKind::normal);
  piece_to_id_.reserve(n * 2);
  for (int32_t i = 0; i < n; ++i)
    if (!d_.pieces[i].empty()) piece_to_id_[d_.pieces[i]] = i;  // duplicates: last wins (llama.cpp)

  size_t skipped = 0;
  merges_.reserve(d_.merges.size() * 2);
  for (size_t r = 0; r < d_.merges.size(); ++r) {
    const auto& [a, b] = d_.merges[r];
    auto ia = piece_to_id_.find(a), ib = piece_to_id_.find(b), im = piece_to_id_.find(a + b);
    if (ia == piece_to_id_.end() || ib == piece_to_id_.end() || im == piece_to_id_.end()) {
      ++skipped;
      continue;
    }
    uint64_t key = (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint32_t>(ib->second);
    merges_.emplace(key, std::make_pair(static_cast<int32_t>(r), im->second));  // first rank wins
  }
  if (skipped) log::warn("tokenizer: {} merges refer to pieces not in the vocab; ignored", skipped);

  const auto& bm = byte_map();
  for (int b = 0; b < 256; ++b) {
    auto it = piece_to_id_.find(bm.to_unicode[b]);
    byte_id_[b] = it == piece_to_id_.end() ? -1 : it->second;
  }

  bytes_.resize(n);
  for (int32_t i = 0; i < n; ++i) {
    const auto k = d_.kinds[i];
    const bool raw =
        d_.added_decode_raw &&
        (k == TokenKind::control || k == TokenKind::user_defined || k == TokenKind::unknown);
    // HF's ByteLevel decoder falls back to the token's own text if any char is unmapped.
    if (raw || !unicode_to_bytes(d_.pieces[i], &bytes_[i])) bytes_[i] = d_.pieces[i];
  }

  for (const auto& a : d_.added)
    SLLM_CHECK(a.id >= 0 && a.id < n, "tokenizer: added token '{}' has id {} outside the vocab",
               a.content, a.id);
  added_ = AddedTokenSplitter(d_.added);
  pretok_ = PreTokenizer(d_.pretok);

  bos_id = d_.bos_id;
  eos_id = d_.eos_id;
  pad_id = d_.pad_id;
  unk_id = d_.unk_id;
  add_bos = d_.add_bos;
  chat_template = d_.chat_template;
  fill_stop_ids(*this);
}

bool BpeTokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  return d_.kinds[id] == TokenKind::control || d_.kinds[id] == TokenKind::unknown;
}

std::string BpeTokenizer::piece(int32_t id) const {
  SLLM_CHECK(id >= 0 && id < vocab_size(), "tokenizer: token id {} out of range [0, {})", id,
             vocab_size());
  return d_.pieces[id];
}

std::string BpeTokenizer::token_bytes(int32_t id) const {
  SLLM_CHECK(id >= 0 && id < vocab_size(), "tokenizer: token id {} out of range [0, {})", id,
             vocab_size());
  return bytes_[id];
}

std::optional<int32_t> BpeTokenizer::token_to_id(std::string_view p) const {
  auto it = piece_to_id_.find(std::string(p));
  if (it == piece_to_id_.end()) return std::nullopt;
  return it->second;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  for (const auto& seg : added_.split(text, parse_special)) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    if (!d_.nfc) {
      for (const auto& w : pretok_.split(seg.text)) encode_word(w, out);
      continue;
    }
    // NFC as the tokenizer.json normalizer asks; invalid UTF-8 is left as it is.
    std::string text(seg.text);
    if (auto* n = utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(text.c_str()))) {
      text = reinterpret_cast<const char*>(n);
      std::free(n);
    }
    for (const auto& w : pretok_.split(text)) encode_word(w, out);
  }
  return out;
}

void BpeTokenizer::encode_word(const std::string& word, std::vector<int32_t>& out) const {
  if (word.size() == 1 && byte_id_[static_cast<unsigned char>(word[0])] >= 0) {
    out.push_back(byte_id_[static_cast<unsigned char>(word[0])]);
    return;
  }
  if (d_.ignore_merges) {
    auto it = piece_to_id_.find(bytes_to_unicode(word));
    if (it != piece_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  {
    std::lock_guard<std::mutex> lk(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  merge_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lk(cache_mu_);
  if (cache_.size() >= 100000) cache_.clear();  // bounded: long-running servers see endless words
  cache_.emplace(word, std::move(ids));
}

// Standard BPE: repeatedly apply the lowest-rank merge (leftmost on ties). Symbols form a linked
// list over byte positions and candidate pairs sit in a min-heap, so a word costs O(n log n).
void BpeTokenizer::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  constexpr int32_t kDead = -2;
  struct Sym {
    int32_t id;
    int prev, next;
  };
  struct Cand {
    int32_t rank;
    int pos;
    int32_t left, right, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const int n = static_cast<int>(word.size());
  std::vector<Sym> syms(n);
  for (int i = 0; i < n; ++i)
    syms[i] = {byte_id_[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};

  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto try_push = [&](int l) {
    if (l < 0) return;
    int r = syms[l].next;
    if (r < 0 || syms[l].id < 0 || syms[r].id < 0) return;
    uint64_t key = (static_cast<uint64_t>(syms[l].id) << 32) | static_cast<uint32_t>(syms[r].id);
    auto it = merges_.find(key);
    if (it != merges_.end())
      heap.push({it->second.first, l, syms[l].id, syms[r].id, it->second.second});
  };
  for (int i = 0; i + 1 < n; ++i) try_push(i);

  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& L = syms[c.pos];
    if (L.id != c.left || L.next < 0) continue;  // stale: the left symbol changed
    Sym& R = syms[L.next];
    if (R.id != c.right) continue;
    // A symbol's id fixes its length, so matching ids at the same start means the same pair.
    L.id = c.merged;
    R.id = kDead;
    L.next = R.next;
    if (L.next >= 0) syms[L.next].prev = c.pos;
    try_push(L.prev);
    try_push(c.pos);
  }

  for (int i = 0; i >= 0 && i < n; i = syms[i].next) {
    if (syms[i].id >= 0)
      out.push_back(syms[i].id);
    else if (unk_id >= 0)
      out.push_back(unk_id);  // byte missing from the vocab; HF drops it when there is no unk
  }
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  for (int32_t id : ids) {
    SLLM_CHECK(id >= 0 && id < vocab_size(), "tokenizer: cannot decode id {} (vocab size {})", id,
               vocab_size());
    if (skip_special && is_special(id)) continue;
    out += bytes_[id];
  }
  return out;
}

// ---------------------------------------------------------------- GGUF

std::unique_ptr<Tokenizer> make_bpe_from_gguf(const GgufVocab& v) {
  const size_t n = v.tokens.size();
  SLLM_CHECK(n > 0, "GGUF tokenizer: tokenizer.ggml.tokens is empty");
  SLLM_CHECK(v.token_types.empty() || v.token_types.size() == n,
             "GGUF tokenizer: {} token types for {} tokens", v.token_types.size(), n);
  BpeData d;
  d.pieces = v.tokens;
  d.kinds.assign(n, TokenKind::normal);
  for (size_t i = 0; i < n; ++i) {
    if (!v.token_types.empty()) {
      switch (v.token_types[i]) {
        case 2:
          d.kinds[i] = TokenKind::unknown;
          break;
        case 3:
          d.kinds[i] = TokenKind::control;
          break;
        case 4:
          d.kinds[i] = TokenKind::user_defined;
          break;
        case 5:
          d.kinds[i] = TokenKind::unused;
          break;
        case 6:
          d.kinds[i] = TokenKind::byte;
          break;
        default:
          break;
      }
    } else {
      // No types stored: treat the declared specials and <|...|> pieces as control tokens.
      const auto& t = v.tokens[i];
      const auto id = static_cast<int32_t>(i);
      bool marked = t.size() > 4 && t.starts_with("<|") && t.ends_with("|>");
      if (marked || id == v.bos_id || id == v.eos_id || id == v.pad_id || id == v.unk_id)
        d.kinds[i] = TokenKind::control;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const auto k = d.kinds[i];
    if ((k == TokenKind::control || k == TokenKind::user_defined || k == TokenKind::unknown) &&
        !v.tokens[i].empty()) {
      AddedToken a;
      a.id = static_cast<int32_t>(i);
      a.content = v.tokens[i];
      a.special = k != TokenKind::user_defined;  // user-defined ones are matched even unparsed
      d.added.push_back(std::move(a));
    }
  }
  d.merges.reserve(v.merges.size());
  for (const auto& m : v.merges) {
    size_t pos = m.find(' ', 1);  // from 1: a first part may itself be a space
    SLLM_CHECK(pos != std::string::npos, "GGUF tokenizer: malformed merge '{}'", m);
    d.merges.emplace_back(m.substr(0, pos), m.substr(pos + 1));
  }
  d.pretok = pretok_steps_for_gguf_pre(v.pre, &d.ignore_merges);
  d.added_decode_raw = true;
  d.bos_id = v.bos_id;
  d.eos_id = v.eos_id;
  d.pad_id = v.pad_id;
  d.unk_id = v.unk_id;
  d.add_bos = v.add_bos;
  d.chat_template = v.chat_template;
  auto check_id = [&](int32_t id, const char* what) {
    SLLM_CHECK(id < static_cast<int32_t>(n), "GGUF tokenizer: {} id {} >= vocab size {}", what, id,
               n);
  };
  check_id(d.bos_id, "bos");
  check_id(d.eos_id, "eos");
  check_id(d.pad_id, "pad");
  check_id(d.unk_id, "unk");
  return std::make_unique<BpeTokenizer>(std::move(d));
}

}  // namespace sllm::tok
