// Precompiled header for the libtorch layers: the heavy ATen headers are parsed once.
#pragma once
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/types.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
