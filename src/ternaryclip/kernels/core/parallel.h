// When a loop is worth a parallel region.  Each region wakes the pool's other threads (core/pool.h) and ends in a
// barrier: a few microseconds on an idle CPU, but on a loaded one (a server's own HTTP threads, other
// programs on a small box) every barrier waits for a thread the OS has descheduled.  The float ops of
// a text query (M = a caption's ~10 tokens) are a few microseconds of work on one core, so below these
// sizes they run on the calling thread; the GEMMs, where the work is, stay parallel.
#pragma once
#include <cstdint>

namespace tclip {
constexpr int64_t kParallelMinElements = int64_t(1) << 15;  // LayerNorm, GELU, int8 quantization: floats read
constexpr int64_t kParallelMinFlops = int64_t(1) << 21;     // attention: multiply-adds of the two products
}  // namespace tclip
