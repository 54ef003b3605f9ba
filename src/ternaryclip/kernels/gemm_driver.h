// The tiling driver shared by the SIMD fast paths (avx2.cpp, avx512.cpp).  Include it inside an
// anonymous namespace after <immintrin.h>: each file compiles its own copy with its own ISA flags,
// and internal linkage keeps the copies apart (no AVX-512 code can be picked for an AVX2-only CPU).
//
// `Dots::dots(buf, kp, q, c0, c1, out)` computes sum(u * q) over columns [c0, c1) for the 4 rows of an
// unpacked weight tile and `Dots::kTokens` (2 or 4) token rows q[0..], writing one vector per token
// pair p: out[p] = [r0t0, r0t1, r1t0, r1t1, r2t0, r2t1, r3t0, r3t1] for tokens 2p, 2p + 1.
// `Dots::kStep` is the column granularity it needs (c0 and c1 multiples of it, c1 <= kp).
//
// Loop order: tokens in blocks whose int8 rows fit in L2 (a batch of 32 images is 6304 tokens: without
// blocking every weight tile would stream all of them from memory), then tiles of 4 weight rows split
// across threads, unpacked once per token block and reused for its tokens, two at a time.

constexpr int NR = 4;                          // weight rows per tile
constexpr int64_t kTokenBlockBytes = 192 << 10;  // int8 activation bytes per token block

// Codes u of rows [n0, n0 + NR) into buf[NR][kp]; rows past n are filled with u = 1 (t = 0).
inline void unpack_tile(const TernaryWeights& w, int64_t n0, uint8_t* buf) {
    const __m256i mask = _mm256_set1_epi8(3);
    const int64_t row_bytes = w.kp / 4;
    for (int r = 0; r < NR; ++r) {
        uint8_t* dst = buf + r * w.kp;
        if (n0 + r >= w.n) {
            std::memset(dst, 1, size_t(w.kp));
            continue;
        }
        const uint8_t* src = w.packed + (n0 + r) * row_bytes;
        for (int64_t b = 0; b < w.kp / kBlock; ++b) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + b * 32));
            for (int s = 0; s < 4; ++s) {
                const __m256i u = _mm256_and_si256(_mm256_srli_epi16(v, 2 * s), mask);
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + b * kBlock + s * 32), u);
            }
        }
    }
}

// Eight int32 vectors -> one vector of their eight horizontal sums (in input order).
inline __m256i reduce8(const __m256i* a) {
    const __m256i h01 = _mm256_hadd_epi32(a[0], a[1]), h23 = _mm256_hadd_epi32(a[2], a[3]);
    const __m256i h45 = _mm256_hadd_epi32(a[4], a[5]), h67 = _mm256_hadd_epi32(a[6], a[7]);
    const __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                            _mm256_permute2x128_si256(h0123, h4567, 0x31));
}

inline int64_t round_up(int64_t v, int64_t step) { return (v + step - 1) / step * step; }

inline int64_t token_block(const QuantizedRows& x) {
    const int64_t rows = kTokenBlockBytes / std::max<int64_t>(x.kp, 1);
    return std::max<int64_t>(4, rows - rows % 4);
}

// Token rows i .. i + kTokens - 1 of the block (the last real row repeated past its end); returns how
// many are real.
template <class Dots>
inline int token_rows(const QuantizedRows& x, int64_t i, int64_t m1, const int8_t** q) {
    for (int t = 0; t < Dots::kTokens; ++t) q[t] = x.q + std::min(i + t, m1 - 1) * x.kp;
    return int(std::min<int64_t>(Dots::kTokens, m1 - i));
}

// Calls emit(token, row, group, dot) with dot = sum over the group of t * q, groups in increasing
// order for each (token, row).
template <class Dots, class Emit>
void for_each_dot(const QuantizedRows& x, const TernaryWeights& w, Emit emit) {
    const int64_t tiles = (w.n + NR - 1) / NR, block = token_block(x);
#pragma omp parallel
    {
        std::vector<uint8_t> buf(size_t(NR * w.kp));
        for (int64_t m0 = 0; m0 < x.m; m0 += block) {
            const int64_t m1 = std::min(x.m, m0 + block);
#pragma omp for schedule(static)
            for (int64_t tile = 0; tile < tiles; ++tile) {
                const int64_t n0 = tile * NR;
                unpack_tile(w, n0, buf.data());
                for (int64_t i = m0; i < m1; i += Dots::kTokens) {
                    const int8_t* q[Dots::kTokens];
                    const int real = token_rows<Dots>(x, i, m1, q);
                    for (int64_t g = 0; g < w.scale_cols; ++g) {
                        alignas(32) int32_t dots[Dots::kTokens / 2][8];
                        const int64_t c0 = w.group_begin(g), c1 = round_up(w.group_end(g), Dots::kStep);
                        __m256i vec[Dots::kTokens / 2];
                        Dots::dots(buf.data(), w.kp, q, c0, c1, vec);
                        for (int p = 0; p < Dots::kTokens / 2; ++p)
                            _mm256_store_si256(reinterpret_cast<__m256i*>(dots[p]), vec[p]);
                        for (int t = 0; t < real; ++t) {
                            const int32_t correction = x.qsum[(i + t) * w.scale_cols + g];
                            for (int r = 0; r < NR && n0 + r < w.n; ++r)
                                emit(i + t, n0 + r, g, dots[t / 2][2 * r + t % 2] - correction);
                        }
                    }
                }
            }
        }
    }
}

// One scale column (per tensor or per row): the whole epilogue in vector registers, per 4 x 2 tile,
// with the reference's IEEE operations: (0 + s * dot) * xscale + bias.
template <class Dots>
void gemm_fast_ungrouped(const QuantizedRows& x, const TernaryWeights& w, float* y) {
    const int64_t tiles = (w.n + NR - 1) / NR, block = token_block(x);
    const int64_t c1 = round_up(w.k, Dots::kStep);
#pragma omp parallel
    {
        std::vector<uint8_t> buf(size_t(NR * w.kp));
        alignas(32) float scale8[8], bias8[8], out8[8];
        for (int64_t m0 = 0; m0 < x.m; m0 += block) {
            const int64_t m1 = std::min(x.m, m0 + block);
#pragma omp for schedule(static)
            for (int64_t tile = 0; tile < tiles; ++tile) {
                const int64_t n0 = tile * NR;
                const int rows = int(std::min<int64_t>(NR, w.n - n0));
                unpack_tile(w, n0, buf.data());
                for (int e = 0; e < 8; ++e) {
                    const int r = e / 2;
                    scale8[e] = r < rows ? w.scale(n0 + r, 0) : 0.0f;
                    bias8[e] = r < rows && w.bias ? w.bias[n0 + r] : 0.0f;
                }
                const __m256 vscale = _mm256_load_ps(scale8), vbias = _mm256_load_ps(bias8), zero = _mm256_setzero_ps();
                for (int64_t i = m0; i < m1; i += Dots::kTokens) {
                    const int8_t* q[Dots::kTokens];
                    const int real = token_rows<Dots>(x, i, m1, q);
                    __m256i vec[Dots::kTokens / 2];
                    Dots::dots(buf.data(), w.kp, q, 0, c1, vec);
                    for (int p = 0; p < Dots::kTokens / 2 && 2 * p < real; ++p) {
                        const int64_t t0 = i + 2 * p, t1 = std::min(t0 + 1, m1 - 1);
                        const int32_t q0 = x.qsum[t0], q1 = x.qsum[t1];
                        const __m256i corr = _mm256_setr_epi32(q0, q1, q0, q1, q0, q1, q0, q1);
                        const float xs0 = x.xscale[t0], xs1 = x.xscale[t1];
                        const __m256 xs = _mm256_setr_ps(xs0, xs1, xs0, xs1, xs0, xs1, xs0, xs1);
                        __m256 f = _mm256_add_ps(
                            zero, _mm256_mul_ps(vscale, _mm256_cvtepi32_ps(_mm256_sub_epi32(vec[p], corr))));
                        f = _mm256_add_ps(_mm256_mul_ps(f, xs), vbias);
                        _mm256_store_ps(out8, f);
                        float* y0 = y + t0 * w.n + n0;
                        float* y1 = y + t1 * w.n + n0;
                        for (int r = 0; r < rows; ++r) {
                            y0[r] = out8[2 * r];
                            y1[r] = out8[2 * r + 1];  // when t1 == t0 this rewrites the same value
                        }
                    }
                }
            }
        }
    }
}

template <class Dots>
void int_dot_driver(const QuantizedRows& x, const TernaryWeights& w, int32_t* out) {
    for_each_dot<Dots>(x, w, [&](int64_t i, int64_t n, int64_t g, int32_t dot) {
        out[(i * w.n + n) * w.scale_cols + g] = dot;
    });
}

template <class Dots>
void gemm_fast_driver(const QuantizedRows& x, const TernaryWeights& w, float* y) {
    if (w.scale_cols == 1) return gemm_fast_ungrouped<Dots>(x, w, y);
    for_each_dot<Dots>(x, w, [&](int64_t i, int64_t n, int64_t g, int32_t dot) {
        float& acc = y[i * w.n + n];
        acc = (g == 0 ? 0.0f : acc) + w.scale(n, g) * float(dot);
        if (g + 1 == w.scale_cols) acc = acc * x.xscale[i] + (w.bias ? w.bias[n] : 0.0f);
    });
}
