# System libraries from Debian packages (scripts/setup.sh installs them).
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
find_package(Threads REQUIRED)

add_library(sllm_deps INTERFACE)
target_link_libraries(sllm_deps INTERFACE fmt::fmt spdlog::spdlog nlohmann_json::nlohmann_json
  yaml-cpp PkgConfig::PCRE2 PkgConfig::SENTENCEPIECE PkgConfig::UTF8PROC Threads::Threads)
target_compile_definitions(sllm_deps INTERFACE SPDLOG_FMT_EXTERNAL)
