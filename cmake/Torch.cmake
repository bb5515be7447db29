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
# The sllm binary links libtorch's CPU part only; CUDA (libtorch_cuda, cuBLAS, ...) comes with the
# CUDA plugin, loaded when a CUDA device is used (src/ops/cuda_plugin.h). A CPU process so never
# maps the CUDA libraries (~400 MB of resident memory at start-up).
find_library(SLLM_TORCH_CPU_LIB torch_cpu PATHS "${TORCH_INSTALL_PREFIX}/lib" NO_DEFAULT_PATH REQUIRED)
find_library(SLLM_C10_LIB c10 PATHS "${TORCH_INSTALL_PREFIX}/lib" NO_DEFAULT_PATH REQUIRED)
add_library(sllm_torch_deps INTERFACE)
target_link_libraries(sllm_torch_deps INTERFACE ${SLLM_TORCH_CPU_LIB} ${SLLM_C10_LIB})
# at::parallel_for is a header template around `#pragma omp parallel`: without OpenMP flags the
# fused kernels' loops would silently run on one thread. libgomp.so.1 resolves to the copy
# libtorch ships (its directory is on the run path), so there is one OpenMP runtime.
find_package(OpenMP REQUIRED)
target_link_libraries(sllm_torch_deps INTERFACE OpenMP::OpenMP_CXX)
add_library(sllm_torch_full_deps INTERFACE)  # everything libtorch has, CUDA included
target_link_libraries(sllm_torch_full_deps INTERFACE ${TORCH_LIBRARIES} OpenMP::OpenMP_CXX)
# libtorch.so exports its own (broken) copy of std::filesystem; putting libstdc++ first in
# the NEEDED list makes the dynamic linker bind those symbols to libstdc++'s copy.
target_link_options(sllm_torch_deps INTERFACE "LINKER:--no-as-needed" "-lstdc++")
target_include_directories(sllm_torch_deps INTERFACE ${TORCH_INCLUDE_DIRS})
target_include_directories(sllm_torch_full_deps INTERFACE ${TORCH_INCLUDE_DIRS})
# torch/include ships its own fmt (v12), which shadows the system fmt for every libtorch
# translation unit: use it header-only there. The libtorch-free layers keep the system
# fmt that spdlog is built with; only std::string crosses between the two.
target_compile_definitions(sllm_torch_deps INTERFACE FMT_HEADER_ONLY)
target_compile_definitions(sllm_torch_full_deps INTERFACE FMT_HEADER_ONLY)
# torch's flags carry the C++ ABI define; apply them to C++ sources only.
separate_arguments(_torch_cxx_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
target_compile_options(sllm_torch_deps INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${_torch_cxx_flags}>)
target_compile_options(sllm_torch_full_deps INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${_torch_cxx_flags}>)
message(STATUS "libtorch ${Torch_VERSION}; CUDA kernels: ${SLLM_HAVE_CUDA}")
