// libsllm.so's content is the API library linked whole (cmake/Install.cmake); CMake wants one
// source file of the shared library's own, and this is it.
