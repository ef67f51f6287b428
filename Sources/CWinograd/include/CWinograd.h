#ifndef CWINOGRAD_H
#define CWINOGRAD_H

/// AVX2 + FMA versions of the Winograd F(4,3) tile transforms of SSDEngine (WinogradTransforms.swift).
///
/// Every tile is an array of 8-float vectors (eight channels, one lane each), row-major. Each
/// function computes out = L · in · Lᵀ for a small row-major coefficient matrix L (p × q), `in`
/// q×q vectors and `out` p×p vectors: the data transform (L = Bᵀ, 6×6), the output transform
/// (L = Aᵀ, 4×6), its adjoint (L = A, 6×4), the filter transform (L = G, 6×3) and its adjoint
/// (L = Gᵀ, 3×6). Call them only when cwino_has_avx2_fma() returns 1.

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the CPU runs AVX2 and FMA (checked once, at run time), else 0.
int cwino_has_avx2_fma(void);

void cwino_sandwich_6x6(const float *l, const float *in, float *out);
void cwino_sandwich_4x6(const float *l, const float *in, float *out);
void cwino_sandwich_6x4(const float *l, const float *in, float *out);
void cwino_sandwich_6x3(const float *l, const float *in, float *out);
void cwino_sandwich_3x6(const float *l, const float *in, float *out);

#ifdef __cplusplus
}
#endif

#endif
