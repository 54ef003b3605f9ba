// The 2bit row unpacking and the loop nest shared by the SIMD fast paths (avx2.cpp: tiles of 16 rows
// x 6 tokens; avx512.cpp: 16 x 16; neon*.cpp: 8 rows x 4 or 8 tokens).  Include it inside the file's
// anonymous namespace, after <immintrin.h> or <arm_neon.h>: each file compiles its own copy with its
// own ISA flags, and internal linkage keeps the copies apart (no AVX-512 code can be picked for an AVX2-only CPU).
// The includer brings <algorithm>, <cmath>, <cstring>, <type_traits> and "pool.h" first.
//
// Loop order: tokens in blocks whose int8 rows fit in L2 (a batch of 32 images is 6304 tokens: without
// blocking every weight tile would stream all of them from memory), then weight tiles handed out to the
// threads as they come (pool.h), each unpacked and interleaved once per token block and reused by all
// its tokens.
//
// Tile provides: kRows (output rows = int32 lanes), kTokens, Acc (the int32 vector type),
//   pack(w, n0, rows_scratch, wbuf)   unpack rows [n0, n0 + kRows) and interleave them as
//                                     wbuf[(k / 4) * kRows + r] = 4 codes of row r;
//   dots(wbuf, q0, kp, k0, k1, acc)   acc[t] = sum over columns [k0, k1) of u * q for token rows kp
//                                     bytes apart from q0 (k0, k1 multiples of 4);
//   minus(acc, v)                     lane-wise acc - v.

constexpr int64_t kTokenBlockBytes = 192 << 10;  // int8 activation bytes per token block

// The scalar end of a row's int8 quantization (columns [j, k) after the vector loop, the same rounding
// as ref.cpp), the zero padding to kp, and the per-group sums of q that the code offset needs.
inline void finish_quantized_row(const float* xr, float inv, int64_t j, int64_t k, int64_t kp, int64_t groups,
                                 int64_t group_size, int8_t* qr, int32_t* qsum_row) {
    for (; j < k; ++j) {
        const float v = std::nearbyint(xr[j] * inv);
        qr[j] = int8_t(std::min(127.0f, std::max(-127.0f, v)));
    }
    std::memset(qr + k, 0, size_t(kp - k));
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t end = g + 1 == groups ? k : (g + 1) * group_size;
        int32_t s = 0;
        for (int64_t c = g * group_size; c < end; ++c) s += qr[c];
        qsum_row[g] = s;
    }
}

// Codes u of rows [n0, n0 + rows) into buf[rows][kp]; rows past n are filled with u = 1 (t = 0).
#if defined(__AVX2__)
void unpack_rows(const TernaryWeights& w, int64_t n0, int rows, uint8_t* buf) {
    const __m256i mask = _mm256_set1_epi8(3);
    const int64_t row_bytes = w.kp / 4;
    for (int r = 0; r < rows; ++r) {
        uint8_t* dst = buf + r * w.kp;
        if (n0 + r >= w.n) {
            std::memset(dst, 1, size_t(w.kp));
            continue;
        }
        const uint8_t* src = w.packed + (n0 + r) * row_bytes;
        for (int64_t b = 0; b < w.kp / kBlock; ++b) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + b * 32));
            for (int s = 0; s < 4; ++s)
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + b * kBlock + s * 32),
                                    _mm256_and_si256(_mm256_srli_epi16(v, 2 * s), mask));
        }
    }
}
#else  // aarch64 (neon.cpp and friends): a plain loop the compiler vectorizes with NEON
void unpack_rows(const TernaryWeights& w, int64_t n0, int rows, uint8_t* buf) {
    const int64_t row_bytes = w.kp / 4;
    for (int r = 0; r < rows; ++r) {
        uint8_t* dst = buf + r * w.kp;
        if (n0 + r >= w.n) {
            std::memset(dst, 1, size_t(w.kp));
            continue;
        }
        const uint8_t* src = w.packed + (n0 + r) * row_bytes;
        for (int64_t b = 0; b < w.kp / kBlock; ++b)
            for (int s = 0; s < 4; ++s)
                for (int j = 0; j < 32; ++j) dst[b * kBlock + s * 32 + j] = uint8_t((src[b * 32 + j] >> (2 * s)) & 3);
    }
}
#endif

// Activation bytes per token block: Tile::kBlockBytes where the tile names its own, else kTokenBlockBytes.
template <class Tile, class = void>
struct BlockBytes {
    static constexpr int64_t value = kTokenBlockBytes;
};
template <class Tile>
struct BlockBytes<Tile, std::void_t<decltype(Tile::kBlockBytes)>> {
    static constexpr int64_t value = Tile::kBlockBytes;
};

inline int64_t token_block(const TernaryWeights& w, int64_t bytes) {
    const int64_t rows = bytes / std::max<int64_t>(w.kp, 1);
    return std::max<int64_t>(kTokenPad, rows / kTokenPad * kTokenPad);
}

struct NoTail {};

// Calls finish(i0, real_tokens, n0, real_rows, g, dots) per micro-tile and group g (groups in
// increasing order), where dots[t] holds the row dots (sum of t * q over group g) of token i0 + t.
// With a tail, the last tokens that do not fill a whole tile go to tail(i0, real_tokens, n0) instead
// (a kernel for a few tokens spends nothing on the padding rows of a tile).
template <class Tile, class Finish, class Tail = NoTail>
void drive(const QuantizedRows& x, const TernaryWeights& w, Finish finish, Tail tail = {}) {
    const int64_t tiles = (w.n + Tile::kRows - 1) / Tile::kRows, block = token_block(w, BlockBytes<Tile>::value);
    Items items((x.m + block - 1) / block * tiles);  // (token block, weight tile), block-major
    run_parallel(true, [&] {
        std::vector<uint8_t> rows(size_t(Tile::kRows * w.kp));
        std::vector<uint32_t> wbuf(size_t(w.kp / 4 * Tile::kRows));
        auto mine = items.join();
        for (int64_t item; mine.next(item);) {
            const int64_t m0 = item / tiles * block, m1 = std::min(x.m, m0 + block);
            const int64_t n0 = item % tiles * Tile::kRows;
            const int real_rows = int(std::min<int64_t>(Tile::kRows, w.n - n0));
            Tile::pack(w, n0, rows.data(), wbuf.data());
            for (int64_t i = m0; i < m1; i += Tile::kTokens) {
                // rows past m are zero padding in the activation buffer (see QuantizedRows)
                const int real = int(std::min<int64_t>(Tile::kTokens, m1 - i));
                if constexpr (!std::is_same_v<Tail, NoTail>) {
                    if (real < Tile::kTokens) {
                        tail(i, real, n0);
                        continue;
                    }
                }
                for (int64_t g = 0; g < w.scale_cols; ++g) {
                    alignas(64) typename Tile::Acc acc[Tile::kTokens];
                    Tile::dots(wbuf.data(), x.q + i * x.kp, x.kp, w.group_begin(g), (w.group_end(g) + 3) / 4 * 4, acc);
                    for (int t = 0; t < real; ++t) acc[t] = Tile::minus(acc[t], x.qsum[(i + t) * w.scale_cols + g]);
                    finish(i, real, n0, real_rows, g, acc);
                }
            }
        }
    });
}

// The exact-mode loop nest (avx2_exact.cpp, avx512_exact.cpp), an sgemm's: (token block, weight tile)
// items, tokens in blocks of BlockBytes of float rows (kept in L2); per item the tile's codes unpacked
// once (Rows x kp bytes), then K in chunks of Chunk columns: the chunk's codes turned into floats
// (to_floats(codes, kp, c0, c1, floats): columns [c0, c1) column-major, Rows floats a column), which stay
// in L1 while every token tile of the block runs over them (token_tiles[count](x, i, w, floats, n0, y, c0,
// c1)).  Without chunks a 32-row tile's floats at K = 3072 (384 KB) were streamed from L2 once per token
// tile.  Between chunks a token tile's sums wait in y and go on in the same order, so chunks change no
// bit.  With per-group scales one chunk is the whole K.
template <int Rows, int Tokens, int64_t Chunk, int64_t BlockBytes, class ToFloats, class TokenTiles>
void exact_drive(const float* x, int64_t m, const TernaryWeights& w, float* y, ToFloats to_floats,
                 const TokenTiles& token_tiles) {
    const int64_t tiles = (w.n + Rows - 1) / Rows;
    const int64_t block = std::max<int64_t>(Tokens, BlockBytes / (4 * std::max<int64_t>(w.k, 1)) / Tokens * Tokens);
    const int64_t chunk = w.scale_cols == 1 ? Chunk : w.kp;
    Items items((m + block - 1) / block * tiles);
    run_parallel(true, [&] {
        std::vector<uint8_t> codes(size_t(Rows * w.kp));
        std::vector<float> floats(size_t(Rows * chunk));
        auto mine = items.join();
        for (int64_t item; mine.next(item);) {
            const int64_t m0 = item / tiles * block, m1 = std::min(m, m0 + block), n0 = item % tiles * Rows;
            unpack_rows(w, n0, Rows, codes.data());
            for (int64_t c0 = 0; c0 < w.k; c0 += chunk) {
                to_floats(codes.data(), w.kp, c0, std::min(w.kp, c0 + chunk), floats.data());
                const int64_t c1 = std::min(w.k, c0 + chunk);
                for (int64_t i = m0; i < m1; i += Tokens)
                    token_tiles[std::min<int64_t>(Tokens, m1 - i)](x, i, w, floats.data(), n0, y, c0, c1);
            }
        }
    });
}

// out[(token * n + row) * groups + g] = the integer dots (the exactness-test hook).
template <class Tile>
void int_dot_driver(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) {
    drive<Tile>(x, w, [&](int64_t i, int real, int64_t n0, int real_rows, int64_t g, const typename Tile::Acc* acc) {
        int32_t lanes[Tile::kRows];
        for (int t = 0; t < real; ++t) {
            std::memcpy(lanes, &acc[t], sizeof lanes);
            for (int r = 0; r < real_rows; ++r) out[((i + t) * w.n + n0 + r) * w.scale_cols + g] = lanes[r];
        }
    });
}
