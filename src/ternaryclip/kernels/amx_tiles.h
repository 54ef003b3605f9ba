// What the AMX files share: the tile configuration (amx.cpp, amx_bf16.cpp, attention_amx.cpp) and the
// pieces of the panel GEMMs' epilogue (amx.cpp's int8 GEMM, amx_bf16.cpp's bf16 GEMM).  Include it inside
// the file's anonymous namespace, after <immintrin.h>, ternary_gemm.h and a kTile of 16 (panel_layout.h's
// or the includer's own); the includer is compiled with -mamx-tile and AVX-512 F at least.  Inside the
// anonymous namespace each file keeps its own copy: no inline function is merged across files built for
// different units (see pool.h).

// The 64-byte palette-1 configuration that `ldtilecfg` reads.
struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

// Tiles 0-3 (accumulators) and 4-5 (activations) with `tokens` lines: fewer than 16 for a batch under 16
// tokens, so that the unit neither loads the padding rows nor multiplies them; 6-7 (weights) with 16.
// Every line 64 bytes.
inline void configure_tiles(int tokens) {
    TileConfig config;
    for (int t = 0; t < 8; ++t) {
        config.rows[t] = uint8_t(t < 6 ? tokens : kTile);
        config.colsb[t] = 64;
    }
    _tile_loadconfig(&config);
}

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

// The output of an m-row GEMM into y: streamed where it is big and its rows 64-byte aligned, and where
// nothing reads y back (groups keep their running sum in y, add reads what it adds to).
inline Output output_for(float* y, int64_t m, const TernaryWeights& w, bool add) {
    const bool aligned = reinterpret_cast<uintptr_t>(y) % 64 == 0 && w.n % kTile == 0;
    const bool big = m * w.n * int64_t(sizeof(float)) >= kStreamBytes;
    return Output{y, aligned && w.scale_cols == 1 && !add && big, add};
}
