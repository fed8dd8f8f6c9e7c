// Kernel selection: done once, on first use, from what the CPU and OS support and NORMEXP_ISA.
#pragma once

#include <string>
#include <vector>

#include "kernels/kernel_table.hpp"

namespace normexp::detail {

// The active table (selected once; throws std::invalid_argument if NORMEXP_ISA names an ISA that is
// unknown or not supported here).
const kernel_table& active_kernels();

// The table for one ISA by name; throws std::invalid_argument if unknown or unsupported on this CPU.
const kernel_table& kernels_for(const std::string& isa);

// ISAs this build contains and this CPU can run, scalar first, best last.
std::vector<std::string> available_isas();

}  // namespace normexp::detail
