// The kernels' threads: a team per calling thread that runs one parallel region at a time.
//
// Why not OpenMP: a forward pass is ~100 regions a few hundred microseconds apart, and between two of
// them libgomp's workers either spin (OMP_WAIT_POLICY=active: they keep the core from everything else,
// and a worker descheduled by a busy neighbour leaves the caller spinning in the barrier; 2x-10x slower
// with one busy process beside them on 2 vCPUs) or sleep at once (passive: on a virtual machine the idle
// vCPU halts, and waking it goes through the hypervisor, ~100-250 us a region on a 2-vCPU KVM guest:
// 1.5x a ViT-B/16 image, 3.4x a caption).  Here:
// - a waiting worker spins on `pause` for 200 us, then calls sched_yield (the vCPU stays awake, and any
//   other runnable thread gets the core at once) for 2 ms, and only then sleeps;
// - nobody spins while other processes keep the CPUs busy (/proc/stat, every 100 ms) or for 50 ms after
//   a thread saw itself preempted (a time slice long gap, or a worker that was awake finishing long
//   after the caller): then threads sleep and wake as the scheduler likes, OpenMP's passive way;
// - work is handed out as Items: one contiguous range a thread, the rest taken over by whoever runs
//   out first, so the caller never waits for a worker that has not started (waking, preempted); it
//   waits only for those still busy with an item, spinning briefly, then asleep.
// Measured in docs/runtime.md ("Threads between parallel regions").
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>

namespace tclip {

// Threads the calling thread's kernels run on (1..thread_cap; default: the cores this process may use).
int num_threads();
void set_num_threads(int n);
int thread_cap();  // 4 x the cores, at most 1024

// body() on the caller and on each worker that joins in time (at most num_threads() in all; one when
// not `parallel`); returns once every call that started has returned.  The region closes to newcomers
// as soon as the caller's own call returns, so a body must take its work from a shared Items (a worker
// that is late, waking up or preempted then takes less, and nobody waits for it).  Regions do
// not nest: one started inside a body runs on that thread alone.
void run_parallel(bool parallel, const std::function<void()>& body);

// Items [0, count) split into one contiguous range per thread (as OpenMP's static schedule: each thread
// streams its own weights and writes its own columns, with no cache line shared but at the seams).  A
// thread that joins takes a free range and works through it front to back; one that runs out takes
// items from the back of another's, so a thread that is late, waking up or preempted leaves its range
// to the others and nobody waits for it.
//
// Out of line (pool.cpp, built for the baseline CPU) on purpose: inline functions are merged across the
// files built with wider instruction sets (AVX-512, AMX, dotprod), and the linker may keep any one copy.
class Items {
  public:
    explicit Items(int64_t count, int ranges = num_threads());  // count < 2^31
    ~Items();
    Items(const Items&) = delete;
    Items& operator=(const Items&) = delete;

    // A thread's view: its own range first, then the others'.
    class Queue {
      public:
        bool next(int64_t& item);

      private:
        friend class Items;
        Queue(Items& items, int own) : items_(items), own_(own) {}
        Items& items_;
        int own_;
    };
    Queue join();

  private:
    struct Slot;
    bool take_front(int range, int64_t& item);
    bool take_back(int range, int64_t& item);
    int ranges_;
    Slot* slots_;
    std::atomic<int> joined_{0};
};

// for (i = 0; i < count; ++i) f(i), in chunks handed out as Items (16 a thread, so that one late thread
// leaves little behind).
template <class F>
void parallel_for(int64_t count, bool parallel, F f) {
    const int64_t chunk = std::max<int64_t>(1, count / (16 * int64_t(num_threads())));
    Items chunks((count + chunk - 1) / chunk);
    run_parallel(parallel && count > 1, [&] {
        auto mine = chunks.join();
        for (int64_t c; mine.next(c);)
            for (int64_t i = c * chunk, end = std::min(count, i + chunk); i < end; ++i) f(i);
    });
}

}  // namespace tclip
