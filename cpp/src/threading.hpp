// Thread-count policy shared by every driver. OpenMP appears only in the drivers' .cpp files.
#pragma once

#include <cstddef>

namespace normexp::detail {

// Below this many elements of work a call runs on the calling thread: a parallel region costs a few
// microseconds, and calls from many Python threads must not oversubscribe the cores.
constexpr std::size_t kParallelMinElements = std::size_t(1) << 15;

// Threads to use for `work` elements split into `items` independent pieces.
int threads_for(std::size_t work, std::size_t items);

}  // namespace normexp::detail
