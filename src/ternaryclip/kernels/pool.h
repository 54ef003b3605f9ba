// The kernels' threads: a team per calling thread that runs one parallel region at a time.
//
// Why not OpenMP: a forward pass is ~100 regions a few hundred microseconds apart, and between two of
// them libgomp's workers either spin (OMP_WAIT_POLICY=active: they keep the core from everything else,
// and a worker descheduled by a busy neighbour leaves the caller spinning in the barrier; 2x-10x slower
// with one busy process beside them on 2 vCPUs) or sleep at once (passive: on a virtual machine the idle
// vCPU halts, and waking it goes through the hypervisor, ~100-250 us a region on a 2-vCPU KVM guest:
// 1.5x a ViT-B/16 image, 3.4x a caption).  Here a waiting worker spins on `pause` for a short while,
// then calls sched_yield (the vCPU stays awake, and any other runnable thread gets the core at once),
// and only then sleeps; a worker that finds itself preempted while spinning stops spinning for a while.
// The caller waits for the others the same way, never sleeping.  (See the benchmarks README.)
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>

namespace tclip {

// Threads the calling thread's kernels run on (1..thread_cap; default: the cores this process may use).
int num_threads();
void set_num_threads(int n);
int thread_cap();  // 4 x the cores, at most kMaxThreads

// body(t, n) on threads t = 0..n-1 (t = 0 is the caller), n = num_threads() when `parallel`, else 1;
// returns when every call has.  Regions do not nest: a body runs its own loops serially.
void run_parallel(bool parallel, const std::function<void(int, int)>& body);

// The contiguous slice [begin, end) of [0, count) that thread t of n takes (OpenMP's static schedule).
inline void static_share(int64_t count, int t, int n, int64_t& begin, int64_t& end) {
    const int64_t chunk = (count + n - 1) / n;
    begin = std::min(count, int64_t(t) * chunk);
    end = std::min(count, begin + chunk);
}

// for (i = 0; i < count; ++i) f(i), the iterations split statically over the threads.
template <class F>
void parallel_for(int64_t count, bool parallel, F f) {
    run_parallel(parallel && count > 1, [&](int t, int n) {
        int64_t begin, end;
        static_share(count, t, n, begin, end);
        for (int64_t i = begin; i < end; ++i) f(i);
    });
}

}  // namespace tclip
