#ifndef CWINOGRAD_H
#define CWINOGRAD_H

/// AVX2 + FMA versions of the Winograd F(4,3) tile transforms of SSDEngine (WinogradTransforms.swift).
///
/// Every tile is an array of 8-float vectors (eight channels, one lane each), row-major. Each
/// function computes out = L · in · Lᵀ for a small row-major coefficient matrix L (p × q), `in`
/// q×q vectors and `out` p×p vectors: the data transform (L = Bᵀ, 6×6), the output transform
/// (L = Aᵀ, 4×6) and its adjoint (L = A, 6×4). Call them only when cwino_has_avx2_fma() returns 1.

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the CPU runs AVX2 and FMA (checked once, at run time), else 0.
int cwino_has_avx2_fma(void);

void cwino_sandwich_6x6(const float *l, const float *in, float *out);
void cwino_sandwich_4x6(const float *l, const float *in, float *out);
void cwino_sandwich_6x4(const float *l, const float *in, float *out);

/// The data transform of one whole 6×6 input tile of eight channels stored eight floats per
/// pixel (a block of nChw{8k}c): `tile` points at the tile's top-left pixel, rows `row_stride`
/// floats apart, pixels `pixel_stride` apart. Writes the 36 transformed vectors to
/// v + ξ·xi_stride. `next`, when not NULL, is the top-left pixel of a tile soon to follow: its
/// rows and those of the tile after it are prefetched (the many row streams of the channel groups
/// defeat the hardware prefetcher).
void cwino_input_tile_avx2(const float *tile, long row_stride, long pixel_stride, const float *bt, float *v,
                           long xi_stride, const float *next);

/// The output transform of one whole 4×4 output tile: reads the 36 vectors m + ξ·xi_stride,
/// adds `bias` (8 floats), clamps at zero when `relu`, writes eight floats per pixel at `out`
/// (rows `row_stride`, pixels `pixel_stride` floats apart).
void cwino_output_tile_avx2(const float *m, long xi_stride, const float *at, const float *bias, int relu, float *out,
                            long row_stride, long pixel_stride);

/// The adjoint of the output transform, z = A dy Aᵀ, for one whole 4×4 tile of an output
/// gradient stored eight floats per pixel (`tile`, `row_stride`, `pixel_stride` as above; `a` is
/// A, 6×4): writes the 36 vectors z + ξ·xi_stride (32-byte aligned).
void cwino_output_grad_tile_avx2(const float *tile, long row_stride, long pixel_stride, const float *a, float *z,
                                 long xi_stride);

#ifdef __cplusplus
}
#endif

#endif
