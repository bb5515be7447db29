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
# cpp-httplib for `sllm serve` (Debian libcpp-httplib-dev: a compiled library + pkg-config file).
pkg_check_modules(HTTPLIB IMPORTED_TARGET cpp-httplib)
if(NOT HTTPLIB_FOUND)
  message(FATAL_ERROR "cpp-httplib not found (needed by `sllm serve`): install the Debian "
                      "package libcpp-httplib-dev (scripts/setup.sh does)")
endif()

add_library(sllm_deps INTERFACE)
target_link_libraries(sllm_deps INTERFACE fmt::fmt spdlog::spdlog nlohmann_json::nlohmann_json
  yaml-cpp PkgConfig::PCRE2 PkgConfig::SENTENCEPIECE PkgConfig::UTF8PROC Threads::Threads)
target_compile_definitions(sllm_deps INTERFACE SPDLOG_FMT_EXTERNAL)
