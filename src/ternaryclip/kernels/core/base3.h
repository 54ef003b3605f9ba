// The base3 -> 2bit converter used when a .tclip file stored with base3 packing is loaded.
#pragma once

#include <cstdint>

namespace tclip {

// Bytes of base3 data for an [n, k] code matrix (five codes a byte).
inline int64_t base3_bytes(int64_t codes) { return codes / 5 + (codes % 5 != 0); }

enum class Base3Status { ok, bad_byte, bad_padding };

// base3 bytes (five codes u in {0, 1, 2} a byte, u0 + 3 u1 + 9 u2 + 27 u3 + 81 u4) -> the 2bit kernel
// layout out[n, kp / 4], rows in parallel.  The same checks as pack/bits.py: no byte >= 243, padding
// trits of the last byte equal to 1.  The caller checks that src holds base3_bytes(n * k) bytes and
// out holds n * kp / 4 (overflow-checked); numpy's version is the reference (tests compare them).
Base3Status base3_to_2bit(const uint8_t* src, int64_t n, int64_t k, int64_t kp, uint8_t* out);

}  // namespace tclip
