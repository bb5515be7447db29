# Compiler launcher (ccache), warnings and sanitizers.
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_C_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()

add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-Wall> $<$<COMPILE_LANGUAGE:CXX>:-Wextra>
                    $<$<COMPILE_LANGUAGE:CXX>:-Wno-unused-parameter>)
# Position-independent code everywhere: the static libraries also go into libsllm.so, and the
# executables reuse their precompiled header, which needs the same flags. No semantic
# interposition keeps GCC inlining and direct calls as in non-PIC code.
add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fPIC>
                    $<$<COMPILE_LANGUAGE:CXX>:-fno-semantic-interposition>)
if(CMAKE_BUILD_TYPE STREQUAL "Release")
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-O2>)
endif()

if(SLLM_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
