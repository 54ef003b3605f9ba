// One (sample, head) of the fast mode's bf16 attention in the layout both bf16 attentions read: the
// AMX-BF16 tiles of attention_amx.cpp and the AVX512-BF16 `vdpbf16ps` vectors of attention_avx512bf16.cpp
// (a tile line is one 512-bit vector: 16 pairs of bf16).  Include it inside the file's anonymous
// namespace, after <immintrin.h>, a kTile of 16, a kLine of 32 and avx512_math::exp16 as `exp16` (and
// pool.h, parallel.h); the includer is compiled with AVX-512 F + BW + BF16.  Inside the anonymous namespace each file keeps its own
// copy (see amx_tiles.h).
//
// Q (scaled) as bf16 rows; K as blocks of 16 keys x 32 dims in pair order (line l holds dims 2l, 2l + 1 of
// each of the 16 keys); V as blocks of 32 keys x 16 dims (line l holds keys 2l, 2l + 1 of each of the 16
// dims).  Keys are padded to 32 with zeros (zero weights: the sums do not change).

// 16 floats -> 16 bf16, round to nearest even.
inline __m256i to_bf16(__m512 v) { return (__m256i)_mm512_cvtneps_pbh(v); }

// One (sample, head) in bf16 blocks; scratch grown once per thread.
struct Head {
    int64_t t, tp, hd;  // tokens, keys padded to 32, head width (a multiple of 32)
    std::vector<uint16_t> q, k, v, p;  // Q rows [tq][hd]; K tiles; V tiles; P rows [16][tp]
    std::vector<float> s, o;           // scores [16][tp]; output of a partial query tile [16][hd]

    void size(int64_t tokens, int64_t width) {
        t = tokens, hd = width, tp = (tokens + kLine - 1) / kLine * kLine;
        const int64_t tq = (tokens + kTile - 1) / kTile * kTile;
        q.assign(size_t(tq * hd), 0);
        k.assign(size_t(tp * hd), 0);
        v.assign(size_t(tp * hd), 0);
        p.assign(size_t(kTile * tp), 0);
        s.assign(size_t(kTile * tp), 0.0f);
        o.assign(size_t(kTile * hd), 0.0f);
    }
    // The B tile of scores for key tile kt (16 keys) and dim step d (32 dims), and of values for key
    // step ks (32 keys) and dim tile dt (16 dims): 512 bf16 each.
    const uint16_t* k_tile(int64_t kt, int64_t d) const { return k.data() + (kt * (hd / kLine) + d) * 512; }
    const uint16_t* v_tile(int64_t ks, int64_t dt) const { return v.data() + (ks * (hd / kTile) + dt) * 512; }

    // Q scaled, K and V of one head from qkv rows 3 * width apart, as bf16 in the tile layouts above.
    // One pass over pairs of tokens (a pair is one line of the V tiles), the pair kPrefetch ahead
    // fetched meanwhile: a row of the head is 3 x 256 bytes every 9 KB at ViT-B, a new page each time,
    // which neither the hardware prefetchers nor the page walker run ahead of on their own.
    void gather(const float* base, int64_t width, float scale) {
        constexpr int64_t kPrefetch = 4;  // pairs of rows ahead
        const int64_t pairs = hd / 2;
        auto* k32 = reinterpret_cast<uint32_t*>(k.data());
        auto* v32 = reinterpret_cast<uint32_t*>(v.data());
        alignas(64) uint16_t kr[512];
        for (int64_t i = 0; i < t; i += 2) {
            for (int64_t a = i + 2 * kPrefetch; a < std::min(t, i + 2 * kPrefetch + 2); ++a)
                for (int part = 0; part < 3; ++part)
                    for (int64_t c = 0; c < hd; c += kTile)
                        _mm_prefetch(reinterpret_cast<const char*>(base + a * 3 * width + part * width + c), _MM_HINT_T0);
            for (int64_t r = i; r < std::min(t, i + 2); ++r) {
                const float* row = base + r * 3 * width;
                for (int64_t c = 0; c < hd; c += kTile) {
                    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q.data() + r * hd + c),
                                        to_bf16(_mm512_mul_ps(_mm512_loadu_ps(row + c), _mm512_set1_ps(scale))));
                    _mm256_store_si256(reinterpret_cast<__m256i*>(kr + c), to_bf16(_mm512_loadu_ps(row + width + c)));
                }
                // key r, dim pair l -> tile (r / 16, l / 16), line l % 16, word r % 16
                const auto* pair = reinterpret_cast<const uint32_t*>(kr);
                for (int64_t l = 0; l < pairs; ++l)
                    k32[((r / kTile * (hd / kLine) + l / kTile) * kTile + l % kTile) * kTile + r % kTile] = pair[l];
            }
            // keys i, i + 1 -> line (i % 32) / 2 of the V tiles of step i / 32
            const float* even = base + i * 3 * width + 2 * width;
            const float* odd = even + 3 * width;
            for (int64_t dt = 0; dt < hd / kTile; ++dt) {
                const __m512i lo = _mm512_cvtepu16_epi32(to_bf16(_mm512_loadu_ps(even + dt * kTile)));
                const __m512i hi = i + 1 < t ? _mm512_cvtepu16_epi32(to_bf16(_mm512_loadu_ps(odd + dt * kTile)))
                                             : _mm512_setzero_si512();
                _mm512_storeu_si512(v32 + ((i / kLine) * (hd / kTile) + dt) * 256 + (i % kLine) / 2 * kTile,
                                    _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
            }
        }
    }

    // Softmax of query q0 + r's scores over its keys into P row r (bf16, zero up to `seen`).
    void softmax_row(int r, int64_t keys, int64_t seen) {
        float* sr = s.data() + r * tp;
        uint16_t* pr = p.data() + r * tp;
        if (keys == 0) {
            std::memset(pr, 0, size_t(seen) * sizeof(uint16_t));
            return;
        }
        __m512 mx = _mm512_set1_ps(-INFINITY);
        int64_t j = 0;
        for (; j + kTile <= keys; j += kTile) mx = _mm512_max_ps(mx, _mm512_loadu_ps(sr + j));
        const __mmask16 tail = __mmask16((1u << (keys - j)) - 1u);
        mx = _mm512_mask_max_ps(mx, tail, mx, _mm512_maskz_loadu_ps(tail, sr + j));
        const __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 sum = _mm512_setzero_ps();
        for (j = 0; j < keys; j += kTile) {  // masked lanes past the keys become 0
            const __mmask16 m = keys - j >= kTile ? __mmask16(0xffff) : __mmask16((1u << (keys - j)) - 1u);
            const __m512 e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_loadu_ps(sr + j), top)));
            _mm512_storeu_ps(sr + j, e);
            sum = _mm512_add_ps(sum, e);
        }
        const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
        for (j = 0; j < seen; j += kTile) {
            const __m512 w = j < keys ? _mm512_mul_ps(_mm512_loadu_ps(sr + j), inv) : _mm512_setzero_ps();
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(pr + j), to_bf16(w));
        }
    }
};

// The two bf16 attentions' driver: (sample, head) items spread over the threads, each head gathered into
// the thread's Head, then `query(h, q0, causal, out_head, width)` for every 16 queries from q0, where row
// i of the head's output is at out_head + i * width.  `enter` / `leave` run once a thread around its items
// (the AMX tile configuration and its release).
template <class Query, class Enter, class Leave>
void run_heads(const float* qkv, int64_t batch, int64_t t, int64_t width, int64_t heads, bool causal, float* out,
               Query query, Enter enter, Leave leave) {
    const int64_t hd = width / heads;
    const float scale = 1.0f / std::sqrt(float(hd));
    Items items(batch * heads);
    run_parallel(2 * batch * heads * t * t * hd >= kParallelMinFlops, [&] {
        enter();
        thread_local Head h;
        h.size(t, hd);
        auto mine = items.join();
        for (int64_t bh; mine.next(bh);) {
            const int64_t bi = bh / heads, head = bh % heads;
            std::fill(h.k.begin(), h.k.end(), 0);
            std::fill(h.v.begin(), h.v.end(), 0);
            h.gather(qkv + bi * t * 3 * width + head * hd, width, scale);
            for (int64_t q0 = 0; q0 < t; q0 += kTile) query(h, q0, causal, out + bi * t * width + head * hd, width);
        }
        _mm_sfence();  // the streamed rows before the region's end (pool.cpp's atomics)
        leave();
    });
}
