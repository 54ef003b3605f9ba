// Overflow-checked size arithmetic for the bindings: every product of sizes that comes from a caller
// (array shapes, k, heads, ...) goes through these before it sizes an allocation or a loop, so that a
// hostile or mistaken size raises ValueError instead of wrapping into a short buffer.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace tclip {

inline void require(bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
}

inline void require(bool ok, const char* message) {
    if (!ok) throw std::invalid_argument(message);
}

// require(ok, [&] { return "..." + std::to_string(n); }): the message is made only when the check fails.  For
// the checks every GEMM call runs: a caption's projection is a few microseconds, and a std::string made per
// check costs a malloc and free (a float's to_string a printf).
template <class Message, std::enable_if_t<std::is_invocable_v<Message>, int> = 0>
inline void require(bool ok, Message&& message) {
    if (!ok) throw std::invalid_argument(std::string(message()));
}

// a * b for non-negative sizes; `what` names the quantity in the error.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
    int64_t out = 0;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &out))
        throw std::invalid_argument(std::string(what) + " overflows a 64-bit size");
    return out;
}

inline int64_t checked_mul(int64_t a, int64_t b, int64_t c, const char* what) {
    return checked_mul(checked_mul(a, b, what), c, what);
}

inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
    int64_t out = 0;
    if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &out))
        throw std::invalid_argument(std::string(what) + " overflows a 64-bit size");
    return out;
}

}  // namespace tclip
