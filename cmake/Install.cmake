# libsllm.so and the CMake package: `find_package(sllm)` + `target_link_libraries(app sllm::sllm)`.
# The shared library holds the whole core (the static libraries, whole-archive for the API); its
# public headers (include/sllm/) need no libtorch. libtorch is found at run time through the
# RUNPATH to the torch wheel it was built against.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

add_library(sllm_shared SHARED src/api/version_info.cpp)
add_library(sllm::sllm ALIAS sllm_shared)
target_link_libraries(sllm_shared PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,sllm_api>")
target_include_directories(sllm_shared PUBLIC $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include>
                                              $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_compile_features(sllm_shared PUBLIC cxx_std_17)
set_target_properties(sllm_shared PROPERTIES
  OUTPUT_NAME sllm EXPORT_NAME sllm VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}
  INSTALL_RPATH "${TORCH_INSTALL_PREFIX}/lib")

install(TARGETS sllm_shared EXPORT sllmTargets LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/sllm DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT sllmTargets NAMESPACE sllm:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sllm)
configure_package_config_file(cmake/sllmConfig.cmake.in ${CMAKE_BINARY_DIR}/sllmConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sllm)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/sllmConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/sllmConfig.cmake ${CMAKE_BINARY_DIR}/sllmConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sllm)
