// AVX2 + FMA tile transforms for SSDEngine's Winograd convolution.
//
// Why C: Swift's SIMD8<Float> compiles to pairs of SSE operations without FMA for the baseline
// x86-64 target, and at 64–128 channels the transforms, not the GEMMs, bound the speed. Here the
// functions are compiled for AVX2 + FMA with a target attribute (nothing else in the package
// changes its flags) and chosen at run time by cwino_has_avx2_fma(); the Swift code keeps its
// portable versions for other CPUs.
#include "CWinograd.h"
#include <immintrin.h>

int cwino_has_avx2_fma(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

#if defined(__x86_64__) || defined(__i386__)
#define AVX2 __attribute__((target("avx2,fma")))

// out (p×p) = L (p×q) · in (q×q) · Lᵀ, with p and q compile-time constants after inlining, so
// the loops unroll and the coefficients are broadcast once per use. The first product keeps
// its p·q intermediate vectors in a local array (registers or L1) and loads each input once.
static inline __attribute__((always_inline)) AVX2 void sandwich(int p, int q, const float *l, const float *in,
                                                              float *out) {
    __m256 t[6 * 6];
    for (int x = 0; x < q; x++) {
        __m256 d[6];
        for (int y = 0; y < q; y++) d[y] = _mm256_loadu_ps(in + (y * q + x) * 8);
        for (int i = 0; i < p; i++) {
            __m256 s = _mm256_mul_ps(_mm256_broadcast_ss(l + i * q), d[0]);
            for (int y = 1; y < q; y++) s = _mm256_fmadd_ps(_mm256_broadcast_ss(l + i * q + y), d[y], s);
            t[i * q + x] = s;
        }
    }
    for (int i = 0; i < p; i++) {
        for (int j = 0; j < p; j++) {
            __m256 s = _mm256_mul_ps(t[i * q], _mm256_broadcast_ss(l + j * q));
            for (int x = 1; x < q; x++) s = _mm256_fmadd_ps(t[i * q + x], _mm256_broadcast_ss(l + j * q + x), s);
            _mm256_storeu_ps(out + (i * p + j) * 8, s);
        }
    }
}

AVX2 void cwino_sandwich_6x6(const float *l, const float *in, float *out) { sandwich(6, 6, l, in, out); }
AVX2 void cwino_sandwich_4x6(const float *l, const float *in, float *out) { sandwich(4, 6, l, in, out); }
AVX2 void cwino_sandwich_6x4(const float *l, const float *in, float *out) { sandwich(6, 4, l, in, out); }

AVX2 void cwino_input_tile_avx2(const float *tile, long row_stride, long pixel_stride, const float *bt, float *v,
                                long xi_stride, const float *next) {
    if (next) {
        // `next` overlaps this tile by two pixels; the tile after it starts four pixels further:
        // fetch the four new pixels of each of its rows (two tiles ahead: the next tile of this
        // channel group comes only after every other group of this tile).
        for (int r = 0; r < 6; r++) {
            __builtin_prefetch(next + r * row_stride + 6 * pixel_stride);
            __builtin_prefetch(next + r * row_stride + 9 * pixel_stride);
        }
    }
    // Column by column: each input vector is loaded once (six loads, six results in registers).
    __m256 t[36];
    for (int x = 0; x < 6; x++) {
        __m256 d[6];
        for (int y = 0; y < 6; y++) d[y] = _mm256_loadu_ps(tile + y * row_stride + x * pixel_stride);
        for (int i = 0; i < 6; i++) {
            __m256 s = _mm256_mul_ps(_mm256_broadcast_ss(bt + i * 6), d[0]);
            for (int y = 1; y < 6; y++) s = _mm256_fmadd_ps(_mm256_broadcast_ss(bt + i * 6 + y), d[y], s);
            t[i * 6 + x] = s;
        }
    }
    for (int i = 0; i < 6; i++) {
        for (int j = 0; j < 6; j++) {
            __m256 s = _mm256_mul_ps(t[i * 6], _mm256_broadcast_ss(bt + j * 6));
            for (int x = 1; x < 6; x++) s = _mm256_fmadd_ps(t[i * 6 + x], _mm256_broadcast_ss(bt + j * 6 + x), s);
            _mm256_store_ps(v + (i * 6 + j) * xi_stride, s);
        }
    }
}

AVX2 void cwino_output_tile_avx2(const float *m, long xi_stride, const float *at, const float *bias, int relu, float *out,
                                 long row_stride, long pixel_stride) {
    // Column by column: each of the 36 vectors is loaded once.
    __m256 t[24];
    for (int x = 0; x < 6; x++) {
        __m256 d[6];
        for (int y = 0; y < 6; y++) d[y] = _mm256_load_ps(m + (y * 6 + x) * xi_stride);
        for (int i = 0; i < 4; i++) {
            __m256 s = _mm256_mul_ps(_mm256_broadcast_ss(at + i * 6), d[0]);
            for (int y = 1; y < 6; y++) s = _mm256_fmadd_ps(_mm256_broadcast_ss(at + i * 6 + y), d[y], s);
            t[i * 6 + x] = s;
        }
    }
    const __m256 b = _mm256_loadu_ps(bias), zero = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 4; j++) {
            __m256 s = _mm256_fmadd_ps(t[i * 6], _mm256_broadcast_ss(at + j * 6), b);
            for (int x = 1; x < 6; x++) s = _mm256_fmadd_ps(t[i * 6 + x], _mm256_broadcast_ss(at + j * 6 + x), s);
            if (relu) s = _mm256_max_ps(s, zero);
            _mm256_storeu_ps(out + i * row_stride + j * pixel_stride, s);
        }
    }
}
AVX2 void cwino_output_grad_tile_avx2(const float *tile, long row_stride, long pixel_stride, const float *a, float *z,
                                      long xi_stride) {
    __m256 t[24];
    for (int x = 0; x < 4; x++) {
        __m256 d[4];
        for (int y = 0; y < 4; y++) d[y] = _mm256_loadu_ps(tile + y * row_stride + x * pixel_stride);
        for (int i = 0; i < 6; i++) {
            __m256 s = _mm256_mul_ps(_mm256_broadcast_ss(a + i * 4), d[0]);
            for (int y = 1; y < 4; y++) s = _mm256_fmadd_ps(_mm256_broadcast_ss(a + i * 4 + y), d[y], s);
            t[i * 4 + x] = s;
        }
    }
    for (int i = 0; i < 6; i++) {
        for (int j = 0; j < 6; j++) {
            __m256 s = _mm256_mul_ps(t[i * 4], _mm256_broadcast_ss(a + j * 4));
            for (int x = 1; x < 4; x++) s = _mm256_fmadd_ps(t[i * 4 + x], _mm256_broadcast_ss(a + j * 4 + x), s);
            _mm256_store_ps(z + (i * 6 + j) * xi_stride, s);
        }
    }
}
#else
void cwino_output_grad_tile_avx2(const float *tile, long row_stride, long pixel_stride, const float *a, float *z,
                                 long xi_stride) {
    (void)tile; (void)row_stride; (void)pixel_stride; (void)a; (void)z; (void)xi_stride;
}
void cwino_input_tile_avx2(const float *tile, long row_stride, long pixel_stride, const float *bt, float *v,
                           long xi_stride, const float *next) {
    (void)tile; (void)row_stride; (void)pixel_stride; (void)bt; (void)v; (void)xi_stride; (void)next;
}
void cwino_output_tile_avx2(const float *m, long xi_stride, const float *at, const float *bias, int relu, float *out,
                            long row_stride, long pixel_stride) {
    (void)m; (void)xi_stride; (void)at; (void)bias; (void)relu; (void)out; (void)row_stride; (void)pixel_stride;
}
void cwino_sandwich_6x6(const float *l, const float *in, float *out) { (void)l; (void)in; (void)out; }
void cwino_sandwich_4x6(const float *l, const float *in, float *out) { (void)l; (void)in; (void)out; }
void cwino_sandwich_6x4(const float *l, const float *in, float *out) { (void)l; (void)in; (void)out; }
#endif
