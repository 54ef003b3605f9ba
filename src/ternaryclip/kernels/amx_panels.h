// What the two AMX panel GEMMs share (amx.cpp's int8 GEMM, amx_bf16.cpp's bf16 GEMM): the per-thread
// panel buffer, the epilogue's pieces and the schedule of (token block, panel) items.  Include it inside
// the file's anonymous namespace after panel_layout.h and amx_tiles.h (and ternary_gemm.h, pool.h), for
// the same reason as amx_tiles.h.

// The per-thread panel buffer, 64-byte aligned (tile loads of aligned lines), grown and never shrunk.
inline uint8_t* panel_buffer(int64_t bytes) {
    thread_local std::vector<uint8_t> storage;
    if (int64_t(storage.size()) < bytes + 64) storage.resize(size_t(bytes + 64));
    const auto address = reinterpret_cast<uintptr_t>(storage.data());
    return storage.data() + ((64 - address % 64) % 64);
}

// Scales and biases of one row half of a panel for group g, zero past n.
struct RowHalf {
    alignas(64) float scale[kTile];
    alignas(64) float bias[kTile];
    int real = 0;  // output rows of the half that exist
};

inline RowHalf row_half(const TernaryWeights& w, int64_t n0, int64_t g) {
    RowHalf h;
    h.real = int(std::clamp<int64_t>(w.n - n0, 0, kTile));
    for (int r = 0; r < kTile; ++r) {
        h.scale[r] = r < h.real ? w.scale(n0 + r, g) : 0.0f;
        h.bias[r] = r < h.real && w.bias ? w.bias[n0 + r] : 0.0f;
    }
    return h;
}

constexpr int64_t kStreamBytes = int64_t(8) << 20;  // outputs from this size on bypass the caches (Output)

// Where the results go.  `stream`: whole 16-row vectors with non-temporal stores.  A large output
// (a batch of images: 6304 x 3072 floats after fc1) cannot stay in cache anyway; ordinary stores first
// read every line they write (1.5x the GEMM's time at 1576 x 768 x 3072 on one SPR core).
// `add`: y += the result (a residual add in the epilogue: y + (the GEMM's value), the very sum a separate
// add would make).  `activation` (the int8 GEMM only): applied to the result first (fc1's GELU: the bits
// of ops_avx512's pass over y, which would read and write all of y once more).
struct Output {
    float* y;
    bool stream;
    bool add = false;
    Activation activation = Activation::none;
};

// The end of one output row of 16 lanes (mask: the rows that exist; whole: all 16 do): y + v with `add`,
// then stored, streamed where allowed.  Both GEMMs' epilogues end this way.
inline void put_row(const Output& out, float* yr, __mmask16 mask, bool whole, __m512 v) {
    if (out.add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, yr), v);
    if (out.stream && whole)
        _mm512_stream_ps(yr, v);
    else
        _mm512_mask_storeu_ps(yr, mask, v);
}

// The accumulator tiles of a block of TokenTiles x 2 output tiles (tiles 0-3, token half a x row half b at
// 2 a + b) zeroed, and stored to acc as 16 lines of 64 bytes each, whatever their lanes hold (int32 dots,
// float sums).
template <int TokenTiles>
inline void zero_accumulators() {
    _tile_zero(0);
    _tile_zero(1);
    if constexpr (TokenTiles == 2) {
        _tile_zero(2);
        _tile_zero(3);
    }
}

template <int TokenTiles, class Lane>
inline void store_accumulators(Lane (*acc)[kTile * kTile]) {
    _tile_stored(0, acc[0], 64);
    _tile_stored(1, acc[1], 64);
    if constexpr (TokenTiles == 2) {
        _tile_stored(2, acc[2], 64);
        _tile_stored(3, acc[3], 64);
    }
}

// The output of an m-row GEMM into y: streamed where it is big and its rows 64-byte aligned, and where
// nothing reads y back (groups keep their running sum in y, add reads what it adds to).
inline Output output_for(float* y, int64_t m, const TernaryWeights& w, bool add) {
    const bool aligned = reinterpret_cast<uintptr_t>(y) % 64 == 0 && w.n % kTile == 0;
    const bool big = m * w.n * int64_t(sizeof(float)) >= kStreamBytes;
    return Output{y, aligned && w.scale_cols == 1 && !add && big, add};
}

// The panel GEMMs' schedule: items (token block of `block` tiles, panel), block-major, spread over the
// threads; per item the panel expanded once into the thread's buffer, then its token tiles in pairs (a
// weight tile load shared by two), group by group.  A block of one or two token tiles reads every weight
// tile once, so there `Panel` expands each chunk just before its use instead (Streamed).  `Panel` holds
// the GEMM's own pieces:
//   using Word;                                    the element type of an expanded tile (int8 codes, bf16)
//   void expand(const uint8_t* packed, int64_t tiles, Word* dst) const;  packed code tiles, expanded
//   template <int TokenTiles, bool Streamed> void tokens(const uint8_t* packed, Word* tiles, int64_t i,
//       int64_t n0, int64_t c0, int64_t c1, int64_t g, const RowHalf* halves) const;
// `buffer_words`: the expanded panel's size.
template <class Panel>
void run_panels(const Panel& panel, int64_t m, const TernaryWeights& w, const uint8_t* prepared, int64_t block,
                int64_t buffer_words, bool stream) {
    using Word = typename Panel::Word;
    const int64_t token_tiles = (m + kTile - 1) / kTile, chunks = w.kp / kChunk;
    const int64_t blocks = (token_tiles + block - 1) / block;
    Items items(blocks * panels(w));
    run_parallel(true, [&] {
        configure_tiles(int(std::min<int64_t>(kTile, m)));
        auto* tiles = reinterpret_cast<Word*>(panel_buffer(buffer_words * int64_t(sizeof(Word))));
        auto mine = items.join();
        for (int64_t item; mine.next(item);) {
            const int64_t b0 = item / panels(w) * block, p = item % panels(w);
            const int64_t b1 = std::min(token_tiles, b0 + block);
            const bool streamed = b1 - b0 <= 2;
            const int64_t n0 = p * kPanel;
            const uint8_t* packed = prepared + p * panel_bytes(w);
            if (!streamed) panel.expand(packed, chunks * 2, tiles);
            for (int64_t g = 0; g < w.scale_cols; ++g) {
                const RowHalf halves[2] = {row_half(w, n0, g), row_half(w, n0 + kTile, g)};
                const int64_t c0 = w.group_begin(g) / kChunk, c1 = (w.group_end(g) + kChunk - 1) / kChunk;
                if (streamed && b1 - b0 == 2)
                    panel.template tokens<2, true>(packed, tiles, b0 * kTile, n0, c0, c1, g, halves);
                else if (streamed)
                    panel.template tokens<1, true>(packed, tiles, b0 * kTile, n0, c0, c1, g, halves);
                else {
                    int64_t t = b0;
                    for (; t + 2 <= b1; t += 2)
                        panel.template tokens<2, false>(packed, tiles, t * kTile, n0, c0, c1, g, halves);
                    if (t < b1) panel.template tokens<1, false>(packed, tiles, t * kTile, n0, c0, c1, g, halves);
                }
            }
        }
        if (stream) _mm_sfence();  // the streamed stores before the region's end (pool.cpp's atomics)
        _tile_release();
    });
}
