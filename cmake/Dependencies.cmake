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
# cpp-httplib for `sllm serve` and `sllm bench --url` (Debian libcpp-httplib-dev: a compiled library + pkg-config file).
pkg_check_modules(HTTPLIB IMPORTED_TARGET cpp-httplib)
if(NOT HTTPLIB_FOUND)
  message(FATAL_ERROR "cpp-httplib not found (needed by `sllm serve` and `sllm bench`): install the Debian "
                      "package libcpp-httplib-dev (scripts/setup.sh does)")
endif()

add_library(sllm_deps INTERFACE)
target_link_libraries(sllm_deps INTERFACE fmt::fmt spdlog::spdlog nlohmann_json::nlohmann_json
  yaml-cpp PkgConfig::PCRE2 PkgConfig::SENTENCEPIECE PkgConfig::UTF8PROC Threads::Threads)
target_compile_definitions(sllm_deps INTERFACE SPDLOG_FMT_EXTERNAL)

# sllm bench: Chart.js inlined into the HTML report, and the
# headless browser its test renders the report with.
set(SLLM_CHARTJS "" CACHE FILEPATH "Chart.js (UMD build) inlined into bench HTML reports")
if(NOT SLLM_CHARTJS)
  find_file(SLLM_CHARTJS_FOUND NAMES chart.umd.js chart.min.js chart.js
            PATHS /usr/share/javascript/chart.js NO_DEFAULT_PATH)
  if(NOT SLLM_CHARTJS_FOUND)
    message(FATAL_ERROR "Chart.js not found in /usr/share/javascript/chart.js: install the Debian "
                        "package libjs-chart.js (scripts/setup.sh does) or pass -DSLLM_CHARTJS=FILE")
  endif()
  set(SLLM_CHARTJS_PATH ${SLLM_CHARTJS_FOUND})
else()
  set(SLLM_CHARTJS_PATH ${SLLM_CHARTJS})
endif()
if(SLLM_BUILD_TESTS)
  find_program(SLLM_CHROMIUM NAMES chromium chromium-browser)
  if(NOT SLLM_CHROMIUM)
    message(FATAL_ERROR "chromium not found: the bench HTML report test renders in headless "
                        "Chromium; install the Debian package chromium (scripts/setup.sh does) or "
                        "pass -DSLLM_CHROMIUM=PATH")
  endif()
  find_package(ZLIB REQUIRED)  # the report test decodes the PNG screenshot
endif()
