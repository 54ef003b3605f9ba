// The AMX tile configuration that amx.cpp, amx_bf16.cpp and attention_amx.cpp share.  Include it inside
// the file's anonymous namespace, after <immintrin.h> and a kTile of 16 (panel_layout.h's or the
// includer's own); the includer is compiled with -mamx-tile and AVX-512 F at least.  Inside the anonymous
// namespace each file keeps its own copy: no inline function is merged across files built for different
// units (see pool.h).

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
