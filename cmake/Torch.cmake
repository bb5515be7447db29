# libtorch from the torch wheel in the project venv (scripts/setup.sh installs it).
# Torch_DIR may be given; otherwise ask the venv's python for torch.utils.cmake_prefix_path.
if(NOT Torch_DIR)
  set(SLLM_PYTHON "${CMAKE_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH "Python with torch installed")
  execute_process(COMMAND ${SLLM_PYTHON} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE _torch_rc ERROR_QUIET)
  if(NOT _torch_rc EQUAL 0)
    message(FATAL_ERROR "torch not found with ${SLLM_PYTHON}: run scripts/setup.sh first")
  endif()
  list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
endif()

set(SLLM_HAVE_CUDA OFF)
if(SLLM_WITH_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(SLLM_HAVE_CUDA ON)
    # Hopper (H100/H200) plus PTX for newer parts; override with -DSLLM_CUDA_ARCHS=...
    set(SLLM_CUDA_ARCHS "90" CACHE STRING "CUDA architectures for sllm kernels")
    set(TORCH_CUDA_ARCH_LIST "9.0" CACHE STRING "")
  endif()
endif()

find_package(Torch REQUIRED)
add_library(sllm_torch_deps INTERFACE)
target_link_libraries(sllm_torch_deps INTERFACE ${TORCH_LIBRARIES})
# libtorch.so exports its own (broken) copy of std::filesystem; putting libstdc++ first in
# the NEEDED list makes the dynamic linker bind those symbols to libstdc++'s copy.
target_link_options(sllm_torch_deps INTERFACE "LINKER:--no-as-needed" "-lstdc++")
target_include_directories(sllm_torch_deps INTERFACE ${TORCH_INCLUDE_DIRS})
# torch/include ships its own fmt (v12), which shadows the system fmt for every libtorch
# translation unit: use it header-only there. The libtorch-free layers keep the system
# fmt that spdlog is built with; only std::string crosses between the two.
target_compile_definitions(sllm_torch_deps INTERFACE FMT_HEADER_ONLY)
# torch's flags carry the C++ ABI define; apply them to C++ sources only.
separate_arguments(_torch_cxx_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
target_compile_options(sllm_torch_deps INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${_torch_cxx_flags}>)
message(STATUS "libtorch ${Torch_VERSION}; CUDA kernels: ${SLLM_HAVE_CUDA}")
