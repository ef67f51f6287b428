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
// its q·p intermediate vectors in a local array (registers or L1).
static inline __attribute__((always_inline)) AVX2 void sandwich(int p, int q, const float *l, const float *in,
                                                              float *out) {
    __m256 t[6 * 6];
    for (int i = 0; i < p; i++) {
        for (int x = 0; x < q; x++) {
            __m256 s = _mm256_mul_ps(_mm256_broadcast_ss(l + i * q), _mm256_loadu_ps(in + x * 8));
            for (int y = 1; y < q; y++) {
                s = _mm256_fmadd_ps(_mm256_broadcast_ss(l + i * q + y), _mm256_loadu_ps(in + (y * q + x) * 8), s);
            }
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
AVX2 void cwino_sandwich_6x3(const float *l, const float *in, float *out) { sandwich(6, 3, l, in, out); }
AVX2 void cwino_sandwich_3x6(const float *l, const float *in, float *out) { sandwich(3, 6, l, in, out); }
#else
void cwino_sandwich_6x6(const float *l, const float *in, float *out) { (void)l; (void)in; (void)out; }
void cwino_sandwich_4x6(const float *l, const float *in, float *out) { (void)l; (void)in; (void)out; }
void cwino_sandwich_6x4(const float *l, const float *in, float *out) { (void)l; (void)in; (void)out; }
void cwino_sandwich_6x3(const float *l, const float *in, float *out) { (void)l; (void)in; (void)out; }
void cwino_sandwich_3x6(const float *l, const float *in, float *out) { (void)l; (void)in; (void)out; }
#endif
