// Overflow-checked size arithmetic for the bindings: every product of sizes that comes from a caller
// (array shapes, k, heads, ...) goes through these before it sizes an allocation or a loop, so that a
// hostile or mistaken size raises ValueError instead of wrapping into a short buffer.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace tclip {

inline void require(bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
}

// a * b for non-negative sizes; `what` names the quantity in the error.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
    int64_t out = 0;
    require(a >= 0 && b >= 0 && !__builtin_mul_overflow(a, b, &out), std::string(what) + " overflows a 64-bit size");
    return out;
}

inline int64_t checked_mul(int64_t a, int64_t b, int64_t c, const char* what) {
    return checked_mul(checked_mul(a, b, what), c, what);
}

inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
    int64_t out = 0;
    require(a >= 0 && b >= 0 && !__builtin_add_overflow(a, b, &out), std::string(what) + " overflows a 64-bit size");
    return out;
}

}  // namespace tclip
