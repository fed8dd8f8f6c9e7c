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

// `fallback` (the scalar table) with every non-null function pointer of `isa` written over it, named
// `isa.name`. Every table the two functions above return went through this, so an ISA may leave an
// entry null (where its file says so) and the scalar kernel runs in its place.
kernel_table with_fallback(const kernel_table& isa, const kernel_table& fallback);

// ISAs this build contains and this CPU can run, scalar first, best last.
std::vector<std::string> available_isas();

// The optional extensions the tables use on top of their ISA ("avx512_bf16": the avx512 table's bfloat16
// entries, dispatch.cpp), in the order of available_isas().
std::vector<std::string> isa_extensions();

// kernels_for(isa) without those extensions (avx512: the table of kernels/avx512/ alone), for tests that
// compare the two in one process.
const kernel_table& kernels_without_extensions(const std::string& isa);

}  // namespace normexp::detail
