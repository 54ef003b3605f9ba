// The kernels' thread teams (see pool.h).  Over 350 lines on purpose: the team's states (wake-up, spin then
// sleep, shutdown, fork), the busy-neighbour reading that decides spinning and the work-stealing item queues
// depend on each other's invariants, which read best in one file.
#include "core/pool.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace tclip {

namespace {

constexpr int kMaxThreads = 1024;
using Clock = std::chrono::steady_clock;
constexpr auto kSpin = std::chrono::microseconds(200);     // waiting on `pause`: a region's usual gap
constexpr auto kYield = std::chrono::milliseconds(2);      // then on sched_yield, then asleep
constexpr auto kPreempted = std::chrono::milliseconds(1);  // a gap this long between two looks: a time slice
constexpr auto kCalm = std::chrono::milliseconds(50);      // no `pause` spinning for this long after one

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// The cores this process may run on (its affinity mask), at least 1.
int usable_cores() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
    return int(std::max(1u, std::thread::hardware_concurrency()));
}

// OMP_NUM_THREADS where set to a valid count (the variable users know from every other CPU library).
int default_threads() {
    if (const char* v = std::getenv("OMP_NUM_THREADS")) {
        char* end = nullptr;
        const long n = std::strtol(v, &end, 10);
        if (end != v && n >= 1 && n <= thread_cap()) return int(n);
    }
    return std::min(usable_cores(), thread_cap());
}

// Whether other processes kept this machine's CPUs busy lately: /proc/stat's busy time minus this
// process's own CPU time over the last ~100 ms, more than half a core (Linux; elsewhere never).  Then
// nobody spins: a spinner would hold a core the neighbour wants, and the scheduler would make the
// spinner's own team wait behind it.  Read at most every 100 ms by whichever thread asks first.
class Neighbours {
  public:
    bool busy() {
        const int64_t now = Clock::now().time_since_epoch().count();
        if (now - checked_.load(std::memory_order_relaxed) >= kWindow && mutex_.try_lock()) {
            refresh(now);
            mutex_.unlock();
        }
        return busy_.load(std::memory_order_relaxed);
    }

  private:
    static constexpr int64_t kWindow =
        std::chrono::duration_cast<Clock::duration>(std::chrono::milliseconds(100)).count();

    // A window much longer than kWindow (nobody asked for a while) says little about now: the sample
    // only starts a new one, and until it ends the machine counts as quiet (a preemption still shows).
    void refresh(int64_t now) {
        const double busy_s = machine_busy_seconds(), self_s = process_seconds();
        if (now - checked_.load() > 3 * kWindow) {
            busy_.store(false, std::memory_order_relaxed);
        } else if (busy_s >= 0) {
            const double wall_s = std::chrono::duration<double>(Clock::duration(now - checked_.load())).count();
            busy_.store((busy_s - busy_s_) - (self_s - self_s_) > 0.5 * wall_s, std::memory_order_relaxed);
        }
        busy_s_ = busy_s, self_s_ = self_s;
        checked_.store(now, std::memory_order_relaxed);
    }

    // user + nice + system + irq + softirq of all CPUs (not steal: yielding cannot get that back); -1 off Linux
    static double machine_busy_seconds() {
        std::FILE* f = std::fopen("/proc/stat", "r");
        if (!f) return -1;
        unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
        const int got = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait,
                                    &irq, &softirq);
        std::fclose(f);
        if (got != 7) return -1;
        static const double tick = 1.0 / double(std::max(1L, sysconf(_SC_CLK_TCK)));
        return double(user + nice + system + irq + softirq) * tick;
    }

    static double process_seconds() {
        timespec ts{};
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
    }

    std::mutex mutex_;
    std::atomic<int64_t> checked_{0};
    std::atomic<bool> busy_{false};
    double busy_s_ = 0, self_s_ = 0;
};

Neighbours& neighbours() {
    static auto* n = new Neighbours;  // never destroyed: detached workers may still ask
    return *n;
}

// True on a worker, and on a caller inside a region: a region started there runs on that thread alone.
thread_local bool in_region = false;

// Shared by a caller and its workers; the workers hold it alive until they see `stop`.
struct Team {
    explicit Team(int n) : size(n) {}
    const int size;
    std::atomic<uint64_t> generation{0};  // bumped once per region
    std::atomic<uint64_t> closed{0};      // the last region closed to newcomers
    std::atomic<int> inside{0};           // workers inside the current region's body
    const std::function<void()>* body = nullptr;
    std::atomic<bool> stop{false};
    std::atomic<int> sleepers{0};            // workers waiting on `wake`
    std::atomic<bool> caller_asleep{false};  // the caller waiting on `done`
    std::atomic<int64_t> calm_until{0};      // Clock ticks: until then nobody spins (see spin)
    std::mutex mutex;
    std::condition_variable wake, done;

    bool calm() const {
        return Clock::now().time_since_epoch().count() < calm_until.load(std::memory_order_relaxed) ||
               neighbours().busy();
    }

    // Spins until ready() (true) or until the spin is over or this thread was preempted while spinning
    // (false: the caller then sleeps).  `pause` for `pausing`, then sched_yield up to `yielding`.  A
    // preemption means another thread wants this core: for kCalm nobody of the team spins, so that its
    // threads sleep and wake as the scheduler likes (a woken sleeper runs at once; a spinner that has
    // used its share waits behind the neighbour, and the whole region with it).
    // With `late_means_busy`, running out of time counts as a preemption too (the caller's wait: the
    // others had as much work, so one that is still busy lost its core for a while).
    template <class Ready>
    bool spin(Ready ready, Clock::duration pausing, Clock::duration yielding, bool late_means_busy = false) {
        if (calm()) return ready();
        const auto start = Clock::now();
        auto last = start;
        for (uint32_t i = 0;; ++i) {
            if (ready()) return true;
            if (i % 32 == 0) {
                const auto now = Clock::now();
                if (now - last > kPreempted) {
                    calm_until.store((now + kCalm).time_since_epoch().count(), std::memory_order_relaxed);
                    return ready();
                }
                last = now;
                if (now - start > yielding) {
                    if (late_means_busy && !ready())
                        calm_until.store((now + kCalm).time_since_epoch().count(), std::memory_order_relaxed);
                    return ready();
                }
            }
            if (last - start < pausing)
                cpu_relax();
            else
                sched_yield();
        }
    }

    void wait_for_work(uint64_t seen) {
        auto ready = [&] {
            return generation.load(std::memory_order_acquire) != seen || stop.load(std::memory_order_relaxed);
        };
        if (spin(ready, kSpin, kYield)) return;
        std::unique_lock<std::mutex> lock(mutex);
        sleepers.fetch_add(1);
        wake.wait(lock, [&] { return generation.load() != seen || stop.load(); });
        sleepers.fetch_sub(1);
    }

    void work() {
        in_region = true;
        uint64_t seen = 0;
        for (;;) {
            wait_for_work(seen);
            if (stop.load()) return;
            seen = generation.load(std::memory_order_acquire);
            // seq_cst, then `closed` read: the caller does the reverse.  A worker held up between reading
            // the generation and here may find a later region: it joins only the one it saw, still open.
            inside.fetch_add(1);
            if (generation.load() == seen && closed.load() != seen) (*body)();
            if (inside.fetch_sub(1) == 1 && caller_asleep.load()) {  // seq_cst: see wait_for_workers
                { std::lock_guard<std::mutex> lock(mutex); }
                done.notify_one();
            }
        }
    }

    void run(const std::function<void()>& job) {
        body = &job;
        const uint64_t region = generation.fetch_add(1) + 1;  // seq_cst: before the sleepers check
        const bool woken = sleepers.load() > 0;
        if (woken) {
            { std::lock_guard<std::mutex> lock(mutex); }
            wake.notify_all();
        }
        const auto start = Clock::now();
        try {
            job();
        } catch (...) {
            closed.store(region);
            wait_for_workers(kSpin, false);  // they still read `job`
            throw;
        }
        closed.store(region);  // seq_cst, then `inside` read: a worker does the reverse
        // Every item is taken: only workers still busy with theirs are waited for.  One that was awake
        // and still works long after the caller finished lost its core to someone else.
        wait_for_workers(std::max<Clock::duration>(kSpin, (Clock::now() - start) / 2 + kPreempted), !woken);
    }

    // The others had as much work: a spin of `patience`, then asleep until the last one is done.
    void wait_for_workers(Clock::duration patience, bool late_means_busy) {
        auto ready = [&] { return inside.load(std::memory_order_acquire) == 0; };
        if (spin(ready, kSpin / 4, patience, late_means_busy)) return;
        std::unique_lock<std::mutex> lock(mutex);
        caller_asleep.store(true);  // seq_cst, then `inside` read: a worker does the reverse
        done.wait(lock, [&] { return inside.load() == 0; });
        caller_asleep.store(false);
    }

    void shut_down() {
        {
            std::lock_guard<std::mutex> lock(mutex);
            stop.store(true);
        }
        wake.notify_all();
    }
};

// Bumped in a child process after fork(): the child has none of its parent's workers, so a team made
// before the fork must not be waited on there (it is left alone: its mutex may have been held).
std::atomic<uint64_t> forks{0};

// The calling thread's team and thread count.  Workers are detached and hold the team; when the
// calling thread exits (or changes its count) they are told to stop.
struct Local {
    int threads = default_threads();
    std::shared_ptr<Team> team;
    uint64_t made_after_forks = 0;
    ~Local() {
        if (team && made_after_forks == forks.load()) team->shut_down();
    }
    // The team of n threads, or nullptr where the OS would not start them (the region then runs on the
    // caller alone: a team short of a worker would wait for it forever).
    Team* team_of(int n) {
        static const bool registered = pthread_atfork(nullptr, nullptr, [] { forks.fetch_add(1); }) == 0;
        (void)registered;
        if (team && made_after_forks != forks.load()) {
            new std::shared_ptr<Team>(std::move(team));  // leaked on purpose, never touched again
            team.reset();
        }
        if (!team || team->size != n) {
            made_after_forks = forks.load();
            if (team) team->shut_down();
            team = std::make_shared<Team>(n);
            try {
                for (int i = 1; i < n; ++i) std::thread([t = team] { t->work(); }).detach();
            } catch (const std::system_error&) {
                team->shut_down();
                team.reset();
                return nullptr;
            }
        }
        return team.get();
    }
};

Local& local() {
    thread_local Local l;
    return l;
}

}  // namespace

int thread_cap() {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    return int(std::min<int64_t>(kMaxThreads, 4 * int64_t(cores)));
}

int num_threads() { return local().threads; }

void set_num_threads(int n) { local().threads = std::clamp(n, 1, thread_cap()); }

void run_parallel(bool parallel, const std::function<void()>& body) {
    Local& l = local();
    Team* team = !parallel || l.threads == 1 || in_region ? nullptr : l.team_of(l.threads);
    if (team == nullptr) {
        body();
        return;
    }
    in_region = true;
    try {
        team->run(body);
    } catch (...) {
        in_region = false;
        throw;
    }
    in_region = false;
}

struct Items::Slot {
    alignas(64) std::atomic<uint64_t> span{0};  // front in the high half, end in the low half
};

namespace {
uint64_t span_of(int64_t front, int64_t end) { return uint64_t(front) << 32 | uint64_t(end); }
int64_t front_of(uint64_t span) { return int64_t(span >> 32); }
int64_t end_of(uint64_t span) { return int64_t(span & 0xffffffffu); }
}  // namespace

Items::Items(int64_t count, int ranges) : ranges_(std::max(1, ranges)), slots_(new Slot[size_t(ranges_)]) {
    for (int r = 0; r < ranges_; ++r)
        slots_[r].span.store(span_of(count * r / ranges_, count * (r + 1) / ranges_), std::memory_order_relaxed);
}

Items::~Items() { delete[] slots_; }

Items::Queue Items::join() {
    const int r = joined_.fetch_add(1, std::memory_order_relaxed);
    return Queue(*this, r < ranges_ ? r : -1);
}

bool Items::Queue::next(int64_t& item) {
    if (own_ >= 0 && items_.take_front(own_, item)) return true;
    for (int r = 0; r < items_.ranges_; ++r)
        if (r != own_ && items_.take_back(r, item)) return true;
    return false;
}

bool Items::take_front(int range, int64_t& item) {
    auto& span = slots_[range].span;
    uint64_t v = span.load(std::memory_order_relaxed);
    while (front_of(v) < end_of(v))
        if (span.compare_exchange_weak(v, span_of(front_of(v) + 1, end_of(v)), std::memory_order_relaxed)) {
            item = front_of(v);
            return true;
        }
    return false;
}

bool Items::take_back(int range, int64_t& item) {
    auto& span = slots_[range].span;
    uint64_t v = span.load(std::memory_order_relaxed);
    while (front_of(v) < end_of(v))
        if (span.compare_exchange_weak(v, span_of(front_of(v), end_of(v) - 1), std::memory_order_relaxed)) {
            item = end_of(v) - 1;
            return true;
        }
    return false;
}

}  // namespace tclip
