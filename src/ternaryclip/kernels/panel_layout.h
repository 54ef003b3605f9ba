// The 2-bit panel layout shared by the AMX and the AVX-512 VNNI fast paths (amx.cpp, avx512.cpp).
// Include it inside the file's anonymous namespace, after tile_driver.h (it needs unpack_rows) and
// <immintrin.h>; the includer is compiled with AVX-512 F + BW at least.
//
// The output rows are cut in panels of 32, each panel's K in chunks of 64 columns.  A tile is 16 lines
// of 64 bytes, byte 4 j + c of line l holding the code u of row j of its half panel, column 4 l + c of
// its chunk: the B operand of AMX's tdpbsud, and also, line by line, the 16 lanes x 4 codes that one
// vpdpbusd multiplies (lane = row).  Its 1024 codes are kept as 256 bytes: byte i holds the codes of
// tile bytes i, i + 256, i + 512, i + 768 in bit pairs 0-1, 2-3, 4-5, 6-7, so four 64-byte loads,
// shifted and masked, rebuild the tile with no shuffles.  Still 2 bits a weight; rows past n hold
// u = 1 (value 0).  Tiles are stored chunk by chunk, the two halves of a chunk side by side.

constexpr int kTile = 16;                     // lines of every tile; rows of a half panel
constexpr int64_t kChunk = 64;                // columns per tile step (64 int8 bytes a line)
constexpr int64_t kPanel = 32;                // output rows per panel: two B tiles
constexpr int64_t kTileBytes = 1024;          // an expanded B tile
constexpr int64_t kPackedTileBytes = 256;     // ... as 2-bit codes

int64_t panels(const TernaryWeights& w) { return (w.n + kPanel - 1) / kPanel; }
int64_t panel_bytes(const TernaryWeights& w) { return w.kp / kChunk * 2 * kPackedTileBytes; }

// Panel p in the packed tile layout: rows unpacked to codes (scratch `rows`, 32 x kp), each tile's
// 16 x 16 words of 4 codes transposed into the unit's order, then folded four bytes into one.
void prepare_panel(const TernaryWeights& w, int64_t p, uint8_t* rows, uint8_t* out) {
    unpack_rows(w, p * kPanel, int(kPanel), rows);
    alignas(64) uint8_t tile[kTileBytes];
    for (int64_t c = 0; c < w.kp / kChunk; ++c)
        for (int half = 0; half < 2; ++half) {
            for (int line = 0; line < kTile; ++line)
                for (int j = 0; j < kTile; ++j)
                    std::memcpy(tile + line * 64 + 4 * j, rows + (half * kTile + j) * w.kp + c * kChunk + 4 * line, 4);
            for (int i = 0; i < kPackedTileBytes; ++i)
                out[i] = uint8_t(tile[i] | tile[i + 256] << 2 | tile[i + 512] << 4 | tile[i + 768] << 6);
            out += kPackedTileBytes;
        }
}

// Every panel of w into out (panels(w) * panel_bytes(w) bytes), the panels spread over the threads.
void prepare_panels(const TernaryWeights& w, uint8_t* out) {
    Items items(panels(w));
    run_parallel(true, [&] {
        std::vector<uint8_t> rows(size_t(kPanel * w.kp));
        auto mine = items.join();
        for (int64_t p; mine.next(p);) prepare_panel(w, p, rows.data(), out + p * panel_bytes(w));
    });
}

// `tiles` packed tiles from src back to codes, 1024 bytes each, into dst.
void expand_panel(const uint8_t* src, int64_t tiles, uint8_t* dst) {
    const __m512i mask = _mm512_set1_epi8(3);
    for (int64_t t = 0; t < tiles; ++t, src += kPackedTileBytes, dst += kTileBytes)
        for (int v = 0; v < 4; ++v) {
            const __m512i bits = _mm512_loadu_si512(src + 64 * v);
            for (int s = 0; s < 4; ++s)
                _mm512_storeu_si512(dst + 256 * s + 64 * v, _mm512_and_si512(_mm512_srli_epi16(bits, 2 * s), mask));
        }
}

// One half panel's tiles, chunk after chunk, into dst: for VNNI the 16-row words of columns
// [4 l, 4 l + 4) at dst + 64 l, the layout avx512.cpp's tile_dots reads.
void expand_half(const uint8_t* panel, int64_t chunks, int half, uint8_t* dst) {
    for (int64_t c = 0; c < chunks; ++c) expand_panel(panel + (c * 2 + half) * kPackedTileBytes, 1, dst + c * kTileBytes);
}
