// The layer ladder of docs/ARCHITECTURE.md, enforced: a source file may include headers of its
// own folder or of a folder in a lower row of the table, never of a row above it. The table is
// read from the document, so the document and the code cannot drift apart.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const fs::path kRoot = SLLM_SOURCE_DIR;

// Folder (relative to the repository, e.g. "src/model") -> its row in the ladder table.
std::map<std::string, int> read_ladder() {
  std::ifstream in(kRoot / "docs/ARCHITECTURE.md");
  std::map<std::string, int> rank;
  std::string line;
  bool in_table = false;
  int row = 0;
  const std::regex folder("`([a-z_/]+)`");
  while (std::getline(in, line)) {
    if (line.rfind("| layer | folder |", 0) == 0) {
      in_table = true;
      continue;
    }
    if (!in_table) continue;
    if (line.rfind("|---", 0) == 0) continue;
    if (line.empty() || line[0] != '|') break;
    const auto second = line.find('|', 1), third = line.find('|', second + 1);
    const std::string cell = line.substr(second + 1, third - second - 1);
    for (std::sregex_iterator it(cell.begin(), cell.end(), folder), end; it != end; ++it)
      rank[(*it)[1].str()] = row;
    ++row;
  }
  return rank;
}

// The ladder folder a path belongs to: the longest table entry that is a prefix of it.
std::string folder_of(const std::map<std::string, int>& rank, const std::string& path) {
  std::string best;
  for (const auto& [f, r] : rank)
    if ((path == f || path.rfind(f + "/", 0) == 0) && f.size() > best.size()) best = f;
  return best;
}

// An include as the build resolves it: "model/linear.h" -> src/model/linear.h, "sllm/x.h" ->
// include/sllm/x.h, "kernels/cpu/x.h" -> kernels/cpu/x.h.
std::string resolve_include(const std::string& inc) {
  for (const std::string base : {"src/", "include/", ""})
    if (fs::exists(kRoot / (base + inc))) return base + inc;
  return "";
}

TEST(LayerLadder, TableIsReadAndCoversEverySourceFolder) {
  const auto rank = read_ladder();
  ASSERT_GE(rank.size(), 10u) << "docs/ARCHITECTURE.md has no ladder table";
  for (const std::string top : {"src", "kernels"})
    for (const auto& e : fs::directory_iterator(kRoot / top))
      if (e.is_directory()) {
        const auto rel = fs::relative(e.path(), kRoot).string();
        EXPECT_FALSE(folder_of(rank, rel).empty())
            << rel << " is not in the ladder table of docs/ARCHITECTURE.md";
      }
  EXPECT_TRUE(rank.count("include/sllm"));
}

TEST(LayerLadder, NoIncludeClimbsTheLadder) {
  const auto rank = read_ladder();
  ASSERT_FALSE(rank.empty());
  const std::regex include_re(R"re(^\s*#\s*include\s*"([^"]+)")re");
  int checked = 0;
  for (const std::string top : {"src", "kernels", "include"})
    for (const auto& e : fs::recursive_directory_iterator(kRoot / top)) {
      if (!e.is_regular_file()) continue;
      const auto ext = e.path().extension().string();
      if (ext != ".h" && ext != ".cpp" && ext != ".cu" && ext != ".cuh") continue;
      const auto rel = fs::relative(e.path(), kRoot).string();
      const auto from = folder_of(rank, rel);
      if (from.empty()) continue;  // reported by the test above
      std::ifstream in(e.path());
      std::string line;
      int lineno = 0;
      while (std::getline(in, line)) {
        ++lineno;
        std::smatch m;
        if (!std::regex_search(line, m, include_re)) continue;
        const auto target = resolve_include(m[1].str());
        if (target.empty()) continue;  // a file of the same folder or a generated header
        const auto to = folder_of(rank, target);
        if (to.empty() || to == from) continue;
        ++checked;
        EXPECT_LT(rank.at(to), rank.at(from))
            << rel << ":" << lineno << " includes " << target << ": " << to << " is not below "
            << from << " in docs/ARCHITECTURE.md";
      }
    }
  EXPECT_GT(checked, 50);
}

}  // namespace
