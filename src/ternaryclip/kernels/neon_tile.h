// What the three aarch64 fast paths share on top of tile_driver.h: the accumulator of a tile of 8
// output rows (two int32x4 vectors), the [k / 4][8 rows][4 codes] interleave, and the float epilogue.
// Include it inside the file's anonymous namespace, after <arm_neon.h> and tile_driver.h: each file
// compiles its own copy with its own flags (see neon.h).

constexpr int kTileRows = 8;

struct Rows8 {  // int32 lanes = the 8 rows of a tile (rows 0-3, rows 4-7)
    int32x4_t lo, hi;
};

inline Rows8 rows8_minus(Rows8 a, int32_t v) {
    const int32x4_t s = vdupq_n_s32(v);
    return {vsubq_s32(a.lo, s), vsubq_s32(a.hi, s)};
}

inline uint32_t load_u32(const void* p) {  // 4 unaligned bytes
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Rows [n0, n0 + 8) interleaved: word j (4 codes) of row r -> out[j * 8 + r] (the AVX2 layout).
inline void pack_words(const TernaryWeights& w, int64_t n0, uint8_t* rows, uint32_t* out) {
    unpack_rows(w, n0, kTileRows, rows);
    for (int64_t j = 0; j < w.kp / 4; ++j)
        for (int r = 0; r < kTileRows; ++r) out[j * kTileRows + r] = load_u32(rows + r * w.kp + j * 4);
}

// y from the integer dots, with the reference's float operations in its order: the running sum over
// groups lives in y (0 + s0 d0, + s1 d1, ...), then times xscale plus bias (no fused multiply-adds:
// the extension is built with -ffp-contract=off).
template <class Tile>
void gemm_fast_rows8(const QuantizedRows& x, const TernaryWeights& w, float* y) {
    drive<Tile>(x, w, [&](int64_t i, int real, int64_t n0, int real_rows, int64_t g, const Rows8* acc) {
        float scale[kTileRows] = {}, bias[kTileRows] = {};
        for (int r = 0; r < real_rows; ++r) {
            scale[r] = w.scale(n0 + r, g);
            bias[r] = w.bias ? w.bias[n0 + r] : 0.0f;
        }
        const float32x4_t s_lo = vld1q_f32(scale), s_hi = vld1q_f32(scale + 4);
        const float32x4_t b_lo = vld1q_f32(bias), b_hi = vld1q_f32(bias + 4);
        const bool first = g == 0, last = g + 1 == w.scale_cols;
        for (int t = 0; t < real; ++t) {
            float* yr = y + (i + t) * w.n + n0;
            float v[kTileRows] = {};
            if (!first) std::memcpy(v, yr, sizeof(float) * size_t(real_rows));
            float32x4_t lo = vaddq_f32(vld1q_f32(v), vmulq_f32(s_lo, vcvtq_f32_s32(acc[t].lo)));
            float32x4_t hi = vaddq_f32(vld1q_f32(v + 4), vmulq_f32(s_hi, vcvtq_f32_s32(acc[t].hi)));
            if (last) {
                const float32x4_t xs = vdupq_n_f32(x.xscale[i + t]);
                lo = vaddq_f32(vmulq_f32(lo, xs), b_lo);
                hi = vaddq_f32(vmulq_f32(hi, xs), b_hi);
            }
            vst1q_f32(v, lo);
            vst1q_f32(v + 4, hi);
            std::memcpy(yr, v, sizeof(float) * size_t(real_rows));
        }
    });
}
