// base3 -> 2bit conversion (see base3.h).
#include "core/base3.h"
#include "core/pool.h"

#include <array>
#include <cstring>
#include <vector>

#include "core/ternary_gemm.h"

namespace tclip {

namespace {

const std::array<std::array<uint8_t, 5>, 243>& trits_of_byte() {
    static const auto table = [] {
        std::array<std::array<uint8_t, 5>, 243> t{};
        for (int b = 0; b < 243; ++b)
            for (int d = 0, v = b; d < 5; ++d, v /= 3) t[size_t(b)][size_t(d)] = uint8_t(v % 3);
        return t;
    }();
    return table;
}

bool padding_is_zero_code(uint8_t last, int64_t used) {
    int v = last;
    for (int d = 0; d < 5; ++d, v /= 3)
        if (d >= used && v % 3 != 1) return false;
    return true;
}

}  // namespace

Base3Status base3_to_2bit(const uint8_t* src, int64_t n, int64_t k, int64_t kp, uint8_t* out) {
    const int64_t codes = n * k, bytes = base3_bytes(codes);
    for (int64_t i = 0; i < bytes; ++i)
        if (src[i] >= 243) return Base3Status::bad_byte;
    if (codes % 5 != 0 && !padding_is_zero_code(src[bytes - 1], codes % 5)) return Base3Status::bad_padding;
    const auto& digits = trits_of_byte();
    Items items(n);
    run_parallel(true, [&] {
        std::vector<uint8_t> u(size_t(kp + 10));  // one row of codes, decoded five a byte
        auto mine = items.join();
        for (int64_t r; mine.next(r);) {
            // bytes [b0, b0 + span) hold the row's codes; b0 + span <= ceil((r + 1) k / 5) <= bytes
            const int64_t first = r * k, b0 = first / 5, skip = first % 5, span = (skip + k + 4) / 5;
            for (int64_t i = 0; i < span; ++i) std::memcpy(u.data() + 5 * i, digits[src[b0 + i]].data(), 5);
            uint8_t* codes_row = u.data() + skip;
            std::memset(codes_row + k, 1, size_t(kp - k));  // padding columns hold the code of 0
            uint8_t* row = out + r * (kp / 4);
            for (int64_t b = 0; b < kp / kBlock; ++b) {
                const uint8_t* blk = codes_row + b * kBlock;
                for (int j = 0; j < 32; ++j)
                    row[b * 32 + j] = uint8_t(blk[j] | (blk[j + 32] << 2) | (blk[j + 64] << 4) | (blk[j + 96] << 6));
            }
        }
    });
    return Base3Status::ok;
}

}  // namespace tclip
