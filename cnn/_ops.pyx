# Kernels of cnn: convolution, transposed convolution and pooling, NCHW.
#
# Kernels only: every array is allocated and every index proven in range by
# cnn/functional.py before it gets here (except max pooling's indices, which
# are data: max_pool2d_backward checks each before use and reports those out
# of range); nothing here allocates, raises or touches a Python object inside
# the loops. One body serves float32 and
# float64 through the `floating` fused type. Outputs are marked # OUT.
#
# Convolution is im2col + GEMM (BLAS through scipy.linalg.cython_blas), one
# image at a time per thread: a thread turns its image into a column matrix
# (C*kH*kW, H_out*W_out) in its own buffer and multiplies by the weights.
# The three kernels below are the three products of a convolution layer, and
# the transposed convolution reuses them with the roles swapped (as Caffe's
# deconv layer does):
#
#   im2col_gemm  out = W @ im2col(x)           conv forward, conv_T grad_input
#   gemm_col2im  out = col2im(W^T @ g)         conv grad_input, conv_T forward
#   weight_grad  gW += a @ im2col(b)^T         conv and conv_T grad_weight
#
# Depthwise convolutions (one input channel per group) have tiny products
# (M = 1, K = kH*kW) and go through direct loops instead.

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int cnn_max_threads(void) { return omp_get_max_threads(); }
    static int cnn_thread_id(void) { return omp_get_thread_num(); }
    static int cnn_have_openmp(void) { return 1; }
    #else
    static int cnn_max_threads(void) { return 1; }
    static int cnn_thread_id(void) { return 0; }
    static int cnn_have_openmp(void) { return 0; }
    #endif

    /* Denormal numbers make x86 arithmetic up to 100x slower. Kernels set
       flush-to-zero and denormals-are-zero on each thread while they run and
       restore the caller's mode afterwards. */
    #if defined(__SSE__) || defined(__x86_64__) || defined(_M_X64)
    #include <xmmintrin.h>
    static unsigned int cnn_ftz_begin(void) {
        unsigned int old = _mm_getcsr();
        _mm_setcsr(old | 0x8040);
        return old;
    }
    static void cnn_ftz_end(unsigned int old) { _mm_setcsr(old); }
    #else
    static unsigned int cnn_ftz_begin(void) { return 0; }
    static void cnn_ftz_end(unsigned int old) { (void)old; }
    #endif

    /* Weight gradient of a 3x3 stride-1 depthwise plane: t[i*3+j] += sum over
       (oh, ow) of g[oh, ow] * xp[oh + i, ow + j], xp the input plane padded to
       (H_out + 2, W_out + 2). A strip of columns at a time, its nine partial
       sums kept in vector registers down the whole plane: the plain loops kept
       them in memory, two loads and a store per multiply-add. GCC's and
       Clang's vector extensions compile to SSE2 on any x86-64 (no -march). */
    #define CNN_DW3X3_WGRAD(NAME, T, LANES)                                        \
    static void NAME(const T* g, const T* xp, Py_ssize_t H_out, Py_ssize_t W_out,  \
                     T* t) {                                                       \
        typedef T V __attribute__((vector_size(LANES * sizeof(T))));               \
        Py_ssize_t Wp = W_out + 2, oh, ow, l, end = W_out - W_out % LANES;         \
        V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0},    \
          a7 = {0}, a8 = {0}, gv, v;                                               \
        T s[9] = {0};                                                              \
        for (ow = 0; ow < end; ow += LANES) {                                      \
            for (oh = 0; oh < H_out; oh++) {                                       \
                const T* r0 = xp + oh * Wp + ow;                                   \
                const T* r1 = r0 + Wp;                                             \
                const T* r2 = r1 + Wp;                                             \
                memcpy(&gv, g + oh * W_out + ow, sizeof(V));                       \
                memcpy(&v, r0, sizeof(V)); a0 += gv * v;                           \
                memcpy(&v, r0 + 1, sizeof(V)); a1 += gv * v;                       \
                memcpy(&v, r0 + 2, sizeof(V)); a2 += gv * v;                       \
                memcpy(&v, r1, sizeof(V)); a3 += gv * v;                           \
                memcpy(&v, r1 + 1, sizeof(V)); a4 += gv * v;                       \
                memcpy(&v, r1 + 2, sizeof(V)); a5 += gv * v;                       \
                memcpy(&v, r2, sizeof(V)); a6 += gv * v;                           \
                memcpy(&v, r2 + 1, sizeof(V)); a7 += gv * v;                       \
                memcpy(&v, r2 + 2, sizeof(V)); a8 += gv * v;                       \
            }                                                                      \
        }                                                                          \
        for (l = 0; l < LANES; l++) {                                              \
            s[0] += a0[l]; s[1] += a1[l]; s[2] += a2[l]; s[3] += a3[l];            \
            s[4] += a4[l]; s[5] += a5[l]; s[6] += a6[l]; s[7] += a7[l];            \
            s[8] += a8[l];                                                         \
        }                                                                          \
        for (ow = end; ow < W_out; ow++) {                                         \
            for (oh = 0; oh < H_out; oh++) {                                       \
                const T* r0 = xp + oh * Wp + ow;                                   \
                T gs = g[oh * W_out + ow];                                         \
                s[0] += gs * r0[0]; s[1] += gs * r0[1]; s[2] += gs * r0[2];        \
                s[3] += gs * r0[Wp]; s[4] += gs * r0[Wp + 1];                      \
                s[5] += gs * r0[Wp + 2]; s[6] += gs * r0[2 * Wp];                  \
                s[7] += gs * r0[2 * Wp + 1]; s[8] += gs * r0[2 * Wp + 2];          \
            }                                                                      \
        }                                                                          \
        for (l = 0; l < 9; l++) t[l] += s[l];                                      \
    }
    /* ATen's running maximum, v replacing m if greater or NaN, without a branch:
       compiled as plain C, the compare became a jump that random data
       mispredicts half the time. */
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    static inline float cnn_later_max_f(float m, float v) {
        __m128 vv = _mm_set_ss(v), nan = _mm_cmpunord_ss(vv, vv);
        __m128 r = _mm_max_ss(vv, _mm_set_ss(m));
        return _mm_cvtss_f32(_mm_or_ps(_mm_and_ps(nan, vv), _mm_andnot_ps(nan, r)));
    }
    static inline double cnn_later_max_d(double m, double v) {
        __m128d vv = _mm_set_sd(v), nan = _mm_cmpunord_sd(vv, vv);
        __m128d r = _mm_max_sd(vv, _mm_set_sd(m));
        return _mm_cvtsd_f64(_mm_or_pd(_mm_and_pd(nan, vv), _mm_andnot_pd(nan, r)));
    }
    #else
    static inline float cnn_later_max_f(float m, float v) { return (v > m || v != v) ? v : m; }
    static inline double cnn_later_max_d(double m, double v) { return (v > m || v != v) ? v : m; }
    #endif

    /* The values of n whole 3x3 stride-2 max-pooling windows of the rows r0,
       r1, r2, float32, four windows at a time with MAXPS in ATen's
       tap order: MAXPS(v, m) is v > m ? v : m, which is ATen's running
       maximum (the first of equal values stays) except that a NaN v does not
       replace m. So the taps are also summed, and a NaN anywhere makes the sum
       NaN: the function then returns 1 and the caller redoes the row with the
       exact loop (so does an inf - inf). Half the instructions of that loop,
       which needs a compare, an unordered compare and a select per tap. */
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    #define CNN_MAX3_ROW(p, first)                                                 \
        do {                                                                       \
            __m128 a = _mm_loadu_ps(p), b = _mm_loadu_ps((p) + 4);                 \
            __m128 a2 = _mm_loadu_ps((p) + 2), b2 = _mm_loadu_ps((p) + 6);         \
            __m128 t0 = _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));             \
            __m128 t1 = _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));             \
            __m128 t2 = _mm_shuffle_ps(a2, b2, _MM_SHUFFLE(2, 0, 2, 0));           \
            if (first) { m = t0; s = t0; }                                         \
            else { m = _mm_max_ps(t0, m); s = _mm_add_ps(s, t0); }                 \
            m = _mm_max_ps(t1, m);                                                 \
            m = _mm_max_ps(t2, m);                                                 \
            s = _mm_add_ps(s, _mm_add_ps(t1, t2));                                 \
        } while (0)
    static int cnn_max3x3s2_values(const float* r0, const float* r1, const float* r2,
                                   Py_ssize_t n, float* out) {
        Py_ssize_t ow;
        __m128 bad = _mm_setzero_ps(), m, s;
        /* window ow + 3 reads up to r[2*ow + 9]: ow + 4 < n keeps that inside
           the n windows, which end at r[2*n] */
        for (ow = 0; ow + 4 < n; ow += 4) {
            CNN_MAX3_ROW(r0 + 2 * ow, 1);
            CNN_MAX3_ROW(r1 + 2 * ow, 0);
            CNN_MAX3_ROW(r2 + 2 * ow, 0);
            bad = _mm_or_ps(bad, _mm_cmpunord_ps(s, s));
            _mm_storeu_ps(out + ow, m);
        }
        if (_mm_movemask_ps(bad))
            return 1;
        for (; ow < n; ow++) {  /* the last windows, exactly */
            const float* rows[3] = {r0 + 2 * ow, r1 + 2 * ow, r2 + 2 * ow};
            float v = rows[0][0];
            int i, j;
            for (i = 0; i < 3; i++)
                for (j = 0; j < 3; j++)
                    v = cnn_later_max_f(v, rows[i][j]);
            out[ow] = v;
        }
        return 0;
    }
    #else
    static int cnn_max3x3s2_values(const float* r0, const float* r1, const float* r2,
                                   Py_ssize_t n, float* out) { return 1; }
    #endif

    #if defined(__GNUC__)
    CNN_DW3X3_WGRAD(cnn_dw3x3_wgrad_float, float, 4)
    CNN_DW3X3_WGRAD(cnn_dw3x3_wgrad_double, double, 2)
    #else
    #error "cnn's kernels need GCC or Clang (vector extensions)"
    #endif
    """
    int CNN_BOUNDSCHECK
    int cnn_max_threads() noexcept nogil
    int cnn_thread_id() noexcept nogil
    int cnn_have_openmp() noexcept nogil
    unsigned int cnn_ftz_begin() noexcept nogil
    void cnn_ftz_end(unsigned int old) noexcept nogil
    float cnn_later_max_f(float m, float v) noexcept nogil
    double cnn_later_max_d(double m, double v) noexcept nogil
    int cnn_max3x3s2_values(const float* r0, const float* r1, const float* r2, Py_ssize_t n,
                            float* out) noexcept nogil
    void cnn_dw3x3_wgrad_float(const float* g, const float* xp, Py_ssize_t H_out,
                               Py_ssize_t W_out, float* t) noexcept nogil
    void cnn_dw3x3_wgrad_double(const double* g, const double* xp, Py_ssize_t H_out,
                                Py_ssize_t W_out, double* t) noexcept nogil


# True in a build made with CNN_CYTHON_DEBUG=1 (bounds checks on).
BOUNDS_CHECKED = bool(CNN_BOUNDSCHECK)


def max_threads():
    """Threads an OpenMP region would use now (1 without OpenMP)."""
    return cnn_max_threads()


def have_openmp():
    return bool(cnn_have_openmp())


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

# Spans are returned by value: a variable set through a pointer inside a
# prange would not be made thread-private by Cython.
ctypedef struct Span:
    Py_ssize_t lo
    Py_ssize_t hi
    Py_ssize_t count  # positions in the span (average pooling: padding included)


cdef inline Span valid_range(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t size,
                             Py_ssize_t n_out) noexcept nogil:
    """Outputs o in [lo, hi) are those of [0, n_out) with 0 <= o*stride + offset < size."""
    cdef Py_ssize_t a = 0, b
    cdef Span r
    if offset < 0:
        a = (-offset + stride - 1) // stride
    if size - 1 - offset < 0:
        b = 0
    else:
        b = (size - 1 - offset) // stride + 1
    if a > n_out:
        a = n_out
    if b > n_out:
        b = n_out
    if b < a:
        b = a
    r.lo = a
    r.hi = b
    r.count = b - a
    return r


cdef inline bint im2col_is_identity(Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t sH, Py_ssize_t sW,
                                    Py_ssize_t pH, Py_ssize_t pW, Py_ssize_t H, Py_ssize_t W,
                                    Py_ssize_t H_out, Py_ssize_t W_out) noexcept nogil:
    """A 1x1, stride-1, unpadded convolution's column matrix is the image itself."""
    return (kH == 1 and kW == 1 and sH == 1 and sW == 1 and pH == 0 and pW == 0
            and H == H_out and W == W_out)


cdef inline void gemm(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                      const floating* A, int lda, const floating* B, int ldb,
                      floating beta, floating* C, int ldc) noexcept nogil:
    """Row-major C (M x N) = alpha * op(A) @ op(B) + beta * C.

    BLAS is column-major, and a row-major matrix is its column-major transpose,
    so this computes C^T = op(B)^T @ op(A)^T.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &N, &M, &K, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &N, &M, &K, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)


cdef inline floating row_sum(const floating* a, Py_ssize_t n) noexcept nogil:
    """Sum with eight independent accumulators, so the compiler can vectorise it."""
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        s0 += a[i]
        s1 += a[i + 1]
        s2 += a[i + 2]
        s3 += a[i + 3]
        s4 += a[i + 4]
        s5 += a[i + 5]
        s6 += a[i + 6]
        s7 += a[i + 7]
        i += 8
    while i < n:
        s0 += a[i]
        i += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


cdef inline void copy_run(void* dst, const void* src, Py_ssize_t n) noexcept nogil:
    """Copy n bytes (a multiple of 4, at most a few hundred) between buffers that do not overlap.

    Each memcpy has a constant size, so it compiles to one or two moves; the
    last block is copied where it ends, overlapping the one before, rather
    than finishing with a loop. A loop of unknown length spends longer
    checking for overlap and alignment than it takes to copy a run of 4 to 16
    pixels, and a call to memcpy longer still.
    """
    cdef char* d = <char*>dst
    cdef const char* s = <const char*>src
    cdef Py_ssize_t k = 0
    if n >= 32:
        while k + 32 <= n:
            memcpy(d + k, s + k, 32)
            k += 32
        if k < n:
            memcpy(d + n - 32, s + n - 32, 32)
    elif n >= 16:
        memcpy(d, s, 16)
        memcpy(d + n - 16, s + n - 16, 16)
    elif n >= 8:
        memcpy(d, s, 8)
        memcpy(d + n - 8, s + n - 8, 8)
    elif n > 0:
        memcpy(d, s, 4)


cdef void im2col(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                 Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t sH, Py_ssize_t sW,
                 Py_ssize_t pH, Py_ssize_t pW, Py_ssize_t dH, Py_ssize_t dW,
                 Py_ssize_t H_out, Py_ssize_t W_out, Py_ssize_t ld,
                 floating* col,  # OUT (C*kH*kW, ld), first H_out*W_out columns
                 floating* padded) noexcept nogil:  # scratch (Hp, Wp), zeroed; NULL unpadded
    """Row (c, i, j) of col is the grid of (H_out, W_out) pixels at (i*dH, j*dW),
    stride (sH, sW), of plane c padded, copied a row of the grid at a time.

    The padded plane, (H_out-1)*sH + dH*(kH-1) + 1 by the same in W, holds
    zeros where the padding is: only the pixels of x are written into it, and
    the caller zeroes it once per kernel call. No row of col then needs bounds
    or zeros, which cost more than the copying: an im2col that clipped each
    row to the image instead ran the benchmark's layers 5-20% slower.
    """
    cdef Py_ssize_t Hp = (H_out - 1) * sH + dH * (kH - 1) + 1
    cdef Py_ssize_t Wp = (W_out - 1) * sW + dW * (kW - 1) + 1
    cdef Py_ssize_t c, i, j, oh, ow, r, width = min(W, Wp - pW)
    cdef const floating* plane
    cdef const floating* src
    cdef floating* dst
    cdef floating* row
    if padded == NULL:
        Wp = W
    for c in range(C):
        if padded == NULL:
            plane = x + c * H * W
        else:
            for r in range(min(H, Hp - pH)):
                memcpy(padded + (r + pH) * Wp + pW, x + (c * H + r) * W, width * sizeof(floating))
            plane = padded
        for i in range(kH):
            for j in range(kW):
                row = col + ((c * kH + i) * kW + j) * ld
                for oh in range(H_out):
                    src = plane + (oh * sH + i * dH) * Wp + j * dW
                    dst = row + oh * W_out
                    if sW == 1:
                        copy_run(dst, src, W_out * sizeof(floating))
                    elif sW == 2:
                        for ow in range(W_out):
                            dst[ow] = src[2 * ow]
                    else:
                        for ow in range(W_out):
                            dst[ow] = src[ow * sW]


cdef void col2im(const floating* col, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                 Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t sH, Py_ssize_t sW,
                 Py_ssize_t pH, Py_ssize_t pW, Py_ssize_t dH, Py_ssize_t dW,
                 Py_ssize_t H_out, Py_ssize_t W_out, Py_ssize_t ld,
                 floating* x,  # OUT (C, H, W)
                 floating* padded) noexcept nogil:  # scratch (Hp, Wp); NULL unpadded
    """The adjoint of im2col: x = 0, then every entry of col is added where im2col read it.

    Each row of col is added back along its grid of the padded plane, a row of
    the grid at a time, without bounds; then the plane's inside is copied to x.
    Unpadded, the rows are added straight into x.
    """
    cdef Py_ssize_t Hp = (H_out - 1) * sH + dH * (kH - 1) + 1
    cdef Py_ssize_t Wp = (W_out - 1) * sW + dW * (kW - 1) + 1
    cdef Py_ssize_t c, i, j, oh, ow, r, width = min(W, Wp - pW), height = min(H, Hp - pH)
    cdef bint covered = height == H and width == W  # does the plane's inside cover x?
    cdef floating* plane
    cdef floating* dst
    cdef const floating* row
    cdef const floating* src
    if padded == NULL:
        Wp = W
        memset(x, 0, C * H * W * sizeof(floating))
    for c in range(C):
        if padded == NULL:
            plane = x + c * H * W
        else:
            plane = padded
            memset(plane, 0, Hp * Wp * sizeof(floating))
        for i in range(kH):
            for j in range(kW):
                row = col + ((c * kH + i) * kW + j) * ld
                for oh in range(H_out):
                    dst = plane + (oh * sH + i * dH) * Wp + j * dW
                    src = row + oh * W_out
                    if sW == 1:
                        for ow in range(W_out):
                            dst[ow] += src[ow]
                    elif sW == 2:
                        for ow in range(W_out):
                            dst[2 * ow] += src[ow]
                    else:
                        for ow in range(W_out):
                            dst[ow * sW] += src[ow]
        if padded != NULL:
            if not covered:
                memset(x + c * H * W, 0, H * W * sizeof(floating))
            for r in range(height):
                memcpy(x + (c * H + r) * W, padded + (r + pH) * Wp + pW, width * sizeof(floating))


cdef inline void gather(const floating* src, Py_ssize_t nb, Py_ssize_t M, Py_ssize_t L,
                        floating* dst) noexcept nogil:  # OUT: dst (M, nb*L)
    """(nb, M, L) -> (M, nb*L): the images of a chunk side by side, one GEMM for all."""
    cdef Py_ssize_t b, m
    for b in range(nb):
        for m in range(M):
            memcpy(dst + m * nb * L + b * L, src + (b * M + m) * L, L * sizeof(floating))


# --------------------------------------------------------------------------
# Convolution by im2col + GEMM
#
# Each thread takes chunks of `chunk` consecutive images. Small images are
# put side by side in one column matrix (C*kH*kW, chunk*L) so that one GEMM
# does the chunk; large ones go one at a time (chunk = 1) and the products
# write straight into the output.
# --------------------------------------------------------------------------

def im2col_gemm(const floating[:, :, :, ::1] x,
                const floating[:, ::1] weight,
                const floating[::1] bias,
                floating[:, :, ::1] out,      # OUT (N, M, H_out*W_out)
                floating[:, :, ::1] col,      # scratch (threads, C*kH*kW, chunk*L)
                floating[:, :, ::1] tmp,      # scratch (threads, M, chunk*L) if chunk > 1
                floating[:, :] padded,        # scratch (threads, Hp*Wp) of im2col when it pads, or (threads, 0)
                Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t sH, Py_ssize_t sW,
                Py_ssize_t pH, Py_ssize_t pW, Py_ssize_t dH, Py_ssize_t dW,
                Py_ssize_t H_out, Py_ssize_t W_out, Py_ssize_t groups, Py_ssize_t chunk,
                bint has_bias, int n_threads):
    """out[n, g] = weight[g] @ im2col(x[n])[g] (+ bias), groups of rows and columns.

    weight is (M, C/groups*kH*kW): conv2d's weight, or conv_transpose2d's seen
    as the weight of the convolution it transposes.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t M = out.shape[1], L = H_out * W_out
    cdef Py_ssize_t M_g = M // groups, K_g = (C // groups) * kH * kW
    cdef bint direct = im2col_is_identity(kH, kW, sH, sW, pH, pW, H, W, H_out, W_out)
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    cdef Py_ssize_t ci, n0, nb, b, g, m, l, ld
    cdef int tid = 0
    cdef unsigned int mxcsr = 0
    cdef const floating* cols
    cdef floating* res
    cdef floating* dst
    cdef const floating* src
    with nogil, parallel(num_threads=n_threads):
        tid = cnn_thread_id()
        mxcsr = cnn_ftz_begin()
        if padded.shape[1]:  # im2col's zeros
            memset(&padded[tid, 0], 0, padded.shape[1] * sizeof(floating))
        for ci in prange(n_chunks, schedule="static"):
            n0 = ci * chunk
            nb = min(chunk, N - n0)
            ld = nb * L
            if direct and nb == 1:  # a 1x1 convolution needs no column matrix
                cols = &x[n0, 0, 0, 0]
            else:
                for b in range(nb):
                    im2col(&x[n0 + b, 0, 0, 0], C, H, W, kH, kW, sH, sW, pH, pW, dH, dW,
                           H_out, W_out, ld, &col[tid, 0, 0] + b * L,
                           &padded[tid, 0] if padded.shape[1] else NULL)
                cols = &col[tid, 0, 0]
            # One image: multiply into out, on top of the bias. Several: into tmp.
            res = &out[n0, 0, 0] if nb == 1 else &tmp[tid, 0, 0]
            if nb == 1 and has_bias:
                for m in range(M):
                    for l in range(L):
                        res[m * L + l] = bias[m]
            for g in range(groups):
                gemm(False, False, M_g, ld, K_g, 1, &weight[g * M_g, 0], K_g,
                     cols + g * K_g * ld, ld, 1 if nb == 1 and has_bias else 0,
                     res + g * M_g * ld, ld)
            if nb > 1:
                for b in range(nb):
                    for m in range(M):
                        dst = &out[n0 + b, m, 0]
                        src = res + m * ld + b * L
                        if has_bias:
                            for l in range(L):
                                dst[l] = src[l] + bias[m]
                        else:
                            memcpy(dst, src, L * sizeof(floating))
        cnn_ftz_end(mxcsr)


def gemm_col2im(const floating[:, :, ::1] src,  # (N, M, H_src*W_src)
                const floating[:, ::1] weight,
                const floating[::1] bias,
                floating[:, :, :, ::1] out,   # OUT (N, C, H, W)
                floating[:, :, ::1] col,      # scratch (threads, C*kH*kW, chunk*L)
                floating[:, :, ::1] tmp,      # scratch (threads, M, chunk*L) if chunk > 1
                floating[:, :] padded,        # scratch (threads, Hp*Wp) of col2im when it pads, or (threads, 0)
                Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t sH, Py_ssize_t sW,
                Py_ssize_t pH, Py_ssize_t pW, Py_ssize_t dH, Py_ssize_t dW,
                Py_ssize_t H_src, Py_ssize_t W_src, Py_ssize_t groups, Py_ssize_t chunk,
                bint has_bias, int n_threads):
    """out[n] = col2im(weight[g]^T @ src[n, g]) (+ bias): im2col_gemm's adjoint in x.

    src is (N, M, H_src*W_src), weight (M, C/groups*kH*kW); (H_src, W_src) is
    the size of the convolution's output, (H, W) the size of its input.
    """
    cdef Py_ssize_t N = out.shape[0], C = out.shape[1], H = out.shape[2], W = out.shape[3]
    cdef Py_ssize_t M = src.shape[1], L = H_src * W_src
    cdef Py_ssize_t M_g = M // groups, K_g = (C // groups) * kH * kW
    cdef bint direct = im2col_is_identity(kH, kW, sH, sW, pH, pW, H, W, H_src, W_src)
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    cdef Py_ssize_t ci, n0, nb, b, g, c, l, ld
    cdef int tid = 0
    cdef unsigned int mxcsr = 0
    cdef floating* cols
    cdef const floating* s
    cdef floating* dst
    with nogil, parallel(num_threads=n_threads):
        tid = cnn_thread_id()
        mxcsr = cnn_ftz_begin()
        for ci in prange(n_chunks, schedule="static"):
            n0 = ci * chunk
            nb = min(chunk, N - n0)
            ld = nb * L
            if nb == 1:
                s = &src[n0, 0, 0]
            else:
                gather(&src[n0, 0, 0], nb, M, L, &tmp[tid, 0, 0])
                s = &tmp[tid, 0, 0]
            # A 1x1 convolution's col2im is the identity: multiply straight into out.
            cols = &out[n0, 0, 0, 0] if direct and nb == 1 else &col[tid, 0, 0]
            for g in range(groups):
                gemm(True, False, K_g, ld, M_g, 1, &weight[g * M_g, 0], K_g,
                     s + g * M_g * ld, ld, 0, cols + g * K_g * ld, ld)
            if not (direct and nb == 1):
                for b in range(nb):
                    col2im(cols + b * L, C, H, W, kH, kW, sH, sW, pH, pW, dH, dW,
                           H_src, W_src, ld, &out[n0 + b, 0, 0, 0],
                           &padded[tid, 0] if padded.shape[1] else NULL)
            if has_bias:
                for b in range(nb):
                    for c in range(C):
                        dst = &out[n0 + b, c, 0, 0]
                        for l in range(H * W):
                            dst[l] += bias[c]
        cnn_ftz_end(mxcsr)


def weight_grad(const floating[:, :, ::1] a,
                const floating[:, :, :, ::1] b,
                floating[:, :, ::1] grad_weight,  # OUT per thread, zeroed: (threads, M, K_g),
                                                  # or (threads, groups*K_g, M_g) if transposed
                floating[:, ::1] grad_bias,       # OUT per thread (threads, M), zeroed
                floating[:, :, ::1] col,          # scratch (threads, C*kH*kW, chunk*L)
                floating[:, :, ::1] tmp,          # scratch (threads, M, chunk*L) if chunk > 1
                floating[:, :] padded,            # scratch (threads, Hp*Wp) of im2col when it pads, or (threads, 0)
                const floating[:, ::1] weight,    # (M, K_g) if want_product, else (0, 0)
                floating[:, :, ::1] product,      # OUT (N, M, L) if want_product, else (0, 0, 0)
                floating[:, :, ::1] tmp_product,  # scratch (threads, M, chunk*L) if want_product and chunk > 1
                Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t sH, Py_ssize_t sW,
                Py_ssize_t pH, Py_ssize_t pW, Py_ssize_t dH, Py_ssize_t dW,
                Py_ssize_t H_a, Py_ssize_t W_a, Py_ssize_t groups, Py_ssize_t chunk,
                bint want_bias, bint transposed, bint want_product, int n_threads):
    """grad_weight[t, g] += a[n, g] @ im2col(b[n])[g]^T over the images n of thread t.

    For conv2d a is grad_out and b the input; for conv_transpose2d a is the
    input and b grad_out. grad_bias[t, m] accumulates the row sums of a.
    The caller sums the per-thread slices. With `transposed` each group's
    gradient is computed as its transpose, im2col(b) @ a^T (the caller
    transposes back): OpenBLAS runs that shape markedly faster when K_g >= M_g,
    87-97 against 58-78 GFLOP/s per core on the benchmark's convolutions.

    With `want_product`, also product[n, g] = weight[g] @ im2col(b[n])[g], what
    im2col_gemm computes, from the same column matrix: conv_transpose2d's
    input gradient, which would otherwise build it a second time.
    """
    cdef Py_ssize_t N = b.shape[0], C = b.shape[1], H = b.shape[2], W = b.shape[3]
    cdef Py_ssize_t M = a.shape[1], L = H_a * W_a
    cdef Py_ssize_t M_g = M // groups, K_g = (C // groups) * kH * kW
    cdef bint direct = im2col_is_identity(kH, kW, sH, sW, pH, pW, H, W, H_a, W_a)
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    cdef Py_ssize_t ci, n0, nb, i, g, m, ld
    cdef int tid = 0
    cdef unsigned int mxcsr = 0
    cdef const floating* cols
    cdef const floating* s
    cdef floating* res
    with nogil, parallel(num_threads=n_threads):
        tid = cnn_thread_id()
        mxcsr = cnn_ftz_begin()
        if padded.shape[1]:  # im2col's zeros
            memset(&padded[tid, 0], 0, padded.shape[1] * sizeof(floating))
        for ci in prange(n_chunks, schedule="static"):
            n0 = ci * chunk
            nb = min(chunk, N - n0)
            ld = nb * L
            if nb == 1:
                s = &a[n0, 0, 0]
            else:
                gather(&a[n0, 0, 0], nb, M, L, &tmp[tid, 0, 0])
                s = &tmp[tid, 0, 0]
            if direct and nb == 1:
                cols = &b[n0, 0, 0, 0]
            else:
                for i in range(nb):
                    im2col(&b[n0 + i, 0, 0, 0], C, H, W, kH, kW, sH, sW, pH, pW, dH, dW,
                           H_a, W_a, ld, &col[tid, 0, 0] + i * L,
                           &padded[tid, 0] if padded.shape[1] else NULL)
                cols = &col[tid, 0, 0]
            for g in range(groups):
                if transposed:
                    gemm(False, True, K_g, M_g, ld, 1, cols + g * K_g * ld, ld,
                         s + g * M_g * ld, ld, 1, &grad_weight[tid, g * K_g, 0], M_g)
                else:
                    gemm(False, True, M_g, K_g, ld, 1, s + g * M_g * ld, ld,
                         cols + g * K_g * ld, ld, 1, &grad_weight[tid, g * M_g, 0], K_g)
            if want_bias:
                for m in range(M):
                    grad_bias[tid, m] += row_sum(s + m * ld, ld)
            if want_product:
                res = &product[n0, 0, 0] if nb == 1 else &tmp_product[tid, 0, 0]
                for g in range(groups):
                    gemm(False, False, M_g, ld, K_g, 1, &weight[g * M_g, 0], K_g,
                         cols + g * K_g * ld, ld, 0, res + g * M_g * ld, ld)
                if nb > 1:
                    for i in range(nb):
                        for m in range(M):
                            memcpy(&product[n0 + i, m, 0], res + m * ld + i * L,
                                   L * sizeof(floating))
        cnn_ftz_end(mxcsr)


# --------------------------------------------------------------------------
# Depthwise convolution (one input channel per group) by direct loops
# --------------------------------------------------------------------------

cdef void pad_plane(const floating* src, Py_ssize_t H, Py_ssize_t W, Py_ssize_t top,
                    Py_ssize_t left, Py_ssize_t Hp, Py_ssize_t Wp,
                    floating* dst) noexcept nogil:  # OUT: dst (Hp, Wp), its zeros already there
    """Copy src into dst with its corner at (top, left) >= 0, clipped to (Hp, Wp).

    Only the rows of src are written: the zeros around them are written once,
    when a kernel zeroes its thread's scratch plane, and stay, as every plane
    a kernel pads has the same geometry. (Writing them each time took a third
    of a depthwise layer's forward and backward.)
    """
    cdef Py_ssize_t r, hi = min(Wp, left + W)
    if hi <= left:
        return
    for r in range(max(top, 0), min(Hp, top + H)):
        memcpy(dst + r * Wp + left, src + (r - top) * W, (hi - left) * sizeof(floating))


cdef void conv3x3_plane(const floating* xp, Py_ssize_t Wp, const floating* k, bint flip,
                        floating init, bint accumulate, Py_ssize_t H_out, Py_ssize_t W_out,
                        floating* out) noexcept nogil:  # OUT: out (H_out, W_out)
    """One plane of a stride-1 3x3 correlation of a padded plane: all nine taps per output.

    Each output is summed in registers in tap order (i, j), on top of `init` or
    of out's own value; `flip` takes the kernel rotated by 180 degrees (the
    input gradient of a correlation is a correlation with the flipped kernel).
    """
    cdef floating k0, k1, k2, k3, k4, k5, k6, k7, k8
    cdef Py_ssize_t oh, ow
    cdef const floating* r0
    cdef const floating* r1
    cdef const floating* r2
    cdef floating* dst
    if flip:
        k0, k1, k2, k3, k4, k5, k6, k7, k8 = k[8], k[7], k[6], k[5], k[4], k[3], k[2], k[1], k[0]
    else:
        k0, k1, k2, k3, k4, k5, k6, k7, k8 = k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8]
    if not accumulate:
        for ow in range(H_out * W_out):
            out[ow] = init
    for oh in range(H_out):
        r0 = xp + oh * Wp
        r1 = r0 + Wp
        r2 = r1 + Wp
        dst = out + oh * W_out
        for ow in range(W_out):
            dst[ow] = (dst[ow]
                       + k0 * r0[ow] + k1 * r0[ow + 1] + k2 * r0[ow + 2]
                       + k3 * r1[ow] + k4 * r1[ow + 1] + k5 * r1[ow + 2]
                       + k6 * r2[ow] + k7 * r2[ow + 1] + k8 * r2[ow + 2])


def depthwise_forward(const floating[:, :, :, ::1] x,
                      const floating[:, :, ::1] weight,   # (C_out, kH, kW)
                      const floating[::1] bias,
                      floating[:, :, :, ::1] out,         # OUT (N, C_out, H_out, W_out)
                      floating[:, :] padded,              # scratch (threads, (H_out+2)*(W_out+2)) or (threads, 0)
                      Py_ssize_t sH, Py_ssize_t sW, Py_ssize_t pH, Py_ssize_t pW,
                      Py_ssize_t dH, Py_ssize_t dW, bint has_bias, int n_threads):
    """out[n, co] = sum over taps of weight[co, i, j] * shifted x[n, co // multiplier].

    A non-empty `padded` selects the stride-1 3x3 path: the input plane is
    padded once and each output sums its nine taps in registers.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t C_out = out.shape[1], H_out = out.shape[2], W_out = out.shape[3]
    cdef Py_ssize_t kH = weight.shape[1], kW = weight.shape[2]
    cdef Py_ssize_t multiplier = C_out // C
    cdef Py_ssize_t p, n, co, i, j, oh, ow, off_h, off_w
    cdef Span h, w
    cdef bint fast = padded.shape[1] > 0
    cdef floating w0
    cdef floating* dst
    cdef const floating* src
    cdef int tid = 0
    cdef unsigned int mxcsr = 0
    with nogil, parallel(num_threads=n_threads):
        tid = cnn_thread_id()
        mxcsr = cnn_ftz_begin()
        if padded.shape[1]:  # pad_plane's zeros
            memset(&padded[tid, 0], 0, padded.shape[1] * sizeof(floating))
        for p in prange(N * C_out, schedule="static"):
            n = p // C_out
            co = p % C_out
            dst = &out[n, co, 0, 0]
            w0 = bias[co] if has_bias else 0
            if fast:
                pad_plane(&x[n, co // multiplier, 0, 0], H, W, pH, pW, H_out + 2, W_out + 2,
                          &padded[tid, 0])
                conv3x3_plane(&padded[tid, 0], W_out + 2, &weight[co, 0, 0], False, w0, False,
                              H_out, W_out, dst)
                continue
            for oh in range(H_out * W_out):
                dst[oh] = w0
            for i in range(kH):
                off_h = i * dH - pH
                h = valid_range(off_h, sH, H, H_out)
                for j in range(kW):
                    off_w = j * dW - pW
                    w = valid_range(off_w, sW, W, W_out)
                    w0 = weight[co, i, j]
                    for oh in range(h.lo, h.hi):
                        src = &x[n, co // multiplier, oh * sH + off_h, 0]
                        if sW == 1:
                            for ow in range(w.lo, w.hi):
                                dst[oh * W_out + ow] += w0 * src[ow + off_w]
                        else:
                            for ow in range(w.lo, w.hi):
                                dst[oh * W_out + ow] += w0 * src[ow * sW + off_w]
        cnn_ftz_end(mxcsr)


def depthwise_backward_input(const floating[:, :, :, ::1] grad_out,
                             const floating[:, :, ::1] weight,
                             floating[:, :, :, ::1] grad_input,  # OUT (N, C, H, W)
                             floating[:, :] padded,    # scratch (threads, (H+2)*(W+2)) or (threads, 0)
                             Py_ssize_t sH, Py_ssize_t sW, Py_ssize_t pH, Py_ssize_t pW,
                             Py_ssize_t dH, Py_ssize_t dW, int n_threads):
    """grad_input[n, c] = sum over its output channels of the correlation's adjoint.

    A non-empty `padded` selects the stride-1 3x3 path (padding at most 2): the
    adjoint is then a 3x3 correlation of grad_out padded by 2 - padding with the
    flipped kernel.
    """
    cdef Py_ssize_t N = grad_input.shape[0], C = grad_input.shape[1]
    cdef Py_ssize_t H = grad_input.shape[2], W = grad_input.shape[3]
    cdef Py_ssize_t C_out = grad_out.shape[1], H_out = grad_out.shape[2], W_out = grad_out.shape[3]
    cdef Py_ssize_t kH = weight.shape[1], kW = weight.shape[2]
    cdef Py_ssize_t multiplier = C_out // C
    cdef Py_ssize_t p, n, c, co, i, j, oh, ow, off_h, off_w
    cdef Span h, w
    cdef bint fast = padded.shape[1] > 0
    cdef floating w0
    cdef floating* dst
    cdef const floating* src
    cdef int tid = 0
    cdef unsigned int mxcsr = 0
    with nogil, parallel(num_threads=n_threads):
        tid = cnn_thread_id()
        mxcsr = cnn_ftz_begin()
        if padded.shape[1]:  # pad_plane's zeros
            memset(&padded[tid, 0], 0, padded.shape[1] * sizeof(floating))
        for p in prange(N * C, schedule="static"):
            n = p // C
            c = p % C
            if fast:
                for co in range(c * multiplier, (c + 1) * multiplier):
                    pad_plane(&grad_out[n, co, 0, 0], H_out, W_out, 2 - pH, 2 - pW, H + 2, W + 2,
                              &padded[tid, 0])
                    conv3x3_plane(&padded[tid, 0], W + 2, &weight[co, 0, 0], True, 0,
                                  co > c * multiplier, H, W, &grad_input[n, c, 0, 0])
                continue
            memset(&grad_input[n, c, 0, 0], 0, H * W * sizeof(floating))
            for co in range(c * multiplier, (c + 1) * multiplier):
                for i in range(kH):
                    off_h = i * dH - pH
                    h = valid_range(off_h, sH, H, H_out)
                    for j in range(kW):
                        off_w = j * dW - pW
                        w = valid_range(off_w, sW, W, W_out)
                        w0 = weight[co, i, j]
                        for oh in range(h.lo, h.hi):
                            src = &grad_out[n, co, oh, 0]
                            dst = &grad_input[n, c, oh * sH + off_h, 0]
                            if sW == 1:
                                for ow in range(w.lo, w.hi):
                                    dst[ow + off_w] += w0 * src[ow]
                            else:
                                for ow in range(w.lo, w.hi):
                                    dst[ow * sW + off_w] += w0 * src[ow]
        cnn_ftz_end(mxcsr)


def depthwise_backward_weight(const floating[:, :, :, ::1] grad_out,
                              const floating[:, :, :, ::1] x,
                              floating[:, :, ::1] grad_weight,   # OUT (C_out, kH, kW)
                              floating[::1] grad_bias,           # OUT (C_out,)
                              floating[:, :, ::1] acc,           # scratch (threads, kH*kW, H_out*W_out)
                              floating[:, :] padded,             # scratch (threads, (H_out+2)*(W_out+2)) or (threads, 0)
                              Py_ssize_t sH, Py_ssize_t sW, Py_ssize_t pH, Py_ssize_t pW,
                              Py_ssize_t dH, Py_ssize_t dW, int n_threads):
    """One output channel per iteration, so no two threads write the same gradient.

    A non-empty `padded` selects the stride-1 3x3 path: each input plane is
    padded and cnn_dw3x3_wgrad sums the nine taps' products in registers.
    Otherwise products are summed position by position into a plane per tap
    (vectorisable multiply-adds), and each plane is reduced once at the end.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t C_out = grad_out.shape[1], H_out = grad_out.shape[2], W_out = grad_out.shape[3]
    cdef Py_ssize_t kH = grad_weight.shape[1], kW = grad_weight.shape[2]
    cdef Py_ssize_t L = H_out * W_out, multiplier = C_out // C
    cdef Py_ssize_t n, co, i, j, oh, ow, off_h, off_w
    cdef Span h, w
    cdef bint fast = padded.shape[1] > 0
    cdef floating bias_sum
    cdef floating* plane
    cdef const floating* g
    cdef const floating* src
    cdef int tid = 0
    cdef unsigned int mxcsr = 0
    with nogil, parallel(num_threads=n_threads):
        tid = cnn_thread_id()
        mxcsr = cnn_ftz_begin()
        if padded.shape[1]:  # pad_plane's zeros
            memset(&padded[tid, 0], 0, padded.shape[1] * sizeof(floating))
        for co in prange(C_out, schedule="static"):
            bias_sum = 0
            if fast:
                plane = &acc[tid, 0, 0]  # the nine sums
                for i in range(9):
                    plane[i] = 0
                for n in range(N):
                    g = &grad_out[n, co, 0, 0]
                    bias_sum = bias_sum + row_sum(g, L)
                    pad_plane(&x[n, co // multiplier, 0, 0], H, W, pH, pW, H_out + 2, W_out + 2,
                              &padded[tid, 0])
                    if floating is float:
                        cnn_dw3x3_wgrad_float(g, &padded[tid, 0], H_out, W_out, plane)
                    else:
                        cnn_dw3x3_wgrad_double(g, &padded[tid, 0], H_out, W_out, plane)
                for i in range(9):
                    grad_weight[co, i // 3, i % 3] = plane[i]
                grad_bias[co] = bias_sum
                continue
            memset(&acc[tid, 0, 0], 0, kH * kW * L * sizeof(floating))
            for n in range(N):
                bias_sum = bias_sum + row_sum(&grad_out[n, co, 0, 0], L)
                for i in range(kH):
                    off_h = i * dH - pH
                    h = valid_range(off_h, sH, H, H_out)
                    for j in range(kW):
                        off_w = j * dW - pW
                        w = valid_range(off_w, sW, W, W_out)
                        plane = &acc[tid, i * kW + j, 0]
                        for oh in range(h.lo, h.hi):
                            g = &grad_out[n, co, oh, 0]
                            src = &x[n, co // multiplier, oh * sH + off_h, 0]
                            if sW == 1:
                                for ow in range(w.lo, w.hi):
                                    plane[oh * W_out + ow] += g[ow] * src[ow + off_w]
                            else:
                                for ow in range(w.lo, w.hi):
                                    plane[oh * W_out + ow] += g[ow] * src[ow * sW + off_w]
            for i in range(kH):
                for j in range(kW):
                    grad_weight[co, i, j] = row_sum(&acc[tid, i * kW + j, 0], L)
            grad_bias[co] = bias_sum
        cnn_ftz_end(mxcsr)


# --------------------------------------------------------------------------
# Pooling, one (n, c) plane per iteration
# --------------------------------------------------------------------------

cdef inline Span window_taps(Py_ssize_t start, Py_ssize_t dilation, Py_ssize_t k,
                             Py_ssize_t size) noexcept nogil:
    """Taps t of a window at `start` whose position start + t*dilation lies in [0, size).

    lo is the first tap at or past 0, not clipped to k: ATen reports the
    position of that tap as the index of a window that holds no input at all.
    """
    cdef Span r
    r.lo = 0
    if start < 0:
        r.lo = (-start + dilation - 1) // dilation
    r.hi = k
    if start + (k - 1) * dilation >= size:
        r.hi = (size - 1 - start) // dilation + 1 if size - 1 - start >= 0 else 0
    r.count = r.hi - r.lo
    return r


cdef inline Span whole_windows_s2(Py_ssize_t k, Py_ssize_t pad, Py_ssize_t W,
                                  Py_ssize_t W_out) noexcept nogil:
    """The windows [lo, hi) of a row, k wide at stride 2 from -pad, that lie whole
    inside [0, W): -pad + 2*o >= 0 and -pad + 2*o + k <= W. The pooling fast
    paths (2x2 and 3x3 windows of stride 2) run on these."""
    cdef Span r
    r.lo = min(W_out, (pad + 1) // 2)
    r.hi = min(W_out, (W - k + pad) // 2 + 1) if W - k + pad >= 0 else 0
    if r.hi < r.lo:
        r.hi = r.lo
    r.count = r.hi - r.lo
    return r


cdef void max_pool_row(const floating* plane, Py_ssize_t H, Py_ssize_t W, Py_ssize_t oh,
                       Py_ssize_t lo, Py_ssize_t hi, floating* orow, floating* trow,
                       int64_t* irow, const int64_t* tap_offsets,
                       Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t sH, Py_ssize_t sW,
                       Py_ssize_t pH, Py_ssize_t pW, Py_ssize_t dH, Py_ssize_t dW) noexcept nogil:
    """Outputs lo..hi-1 of row oh, any window: taps outermost, each tap updating the
    running maxima of the whole span in one branch-free pass (ATen's row-major
    order). The winning tap is kept as a number (so the pass vectorises) and
    turned into an index at the end; irow NULL: values only."""
    cdef Py_ssize_t h_start = oh * sH - pH, ow, kh, kw, off_w, w_start
    cdef Span th = window_taps(h_start, dH, kH, H), tw, w
    cdef floating v, m, tap, best
    cdef bint take
    cdef const floating* src
    for ow in range(lo, hi):
        orow[ow] = -INFINITY
        trow[ow] = -1
    for kh in range(th.lo, th.hi):
        src = plane + (h_start + kh * dH) * W
        for kw in range(kW):
            off_w = kw * dW - pW
            w = valid_range(off_w, sW, W, hi)
            w.lo = max(w.lo, lo)
            tap = kh * kW + kw
            if irow == NULL:  # values alone vectorise better
                for ow in range(w.lo, w.hi):
                    v = src[ow * sW + off_w]
                    m = orow[ow]
                    take = (v > m) | (v != v)
                    orow[ow] = v if take else m
                continue
            for ow in range(w.lo, w.hi):
                v = src[ow * sW + off_w]
                m = orow[ow]
                best = trow[ow]
                take = (v > m) | (v != v)
                orow[ow] = v if take else m
                trow[ow] = tap if take else best
    if irow == NULL:
        return
    for ow in range(lo, hi):
        w_start = ow * sW - pW
        if trow[ow] < 0:  # nothing beat -inf: ATen keeps the first input
            tw = window_taps(w_start, dW, kW, W)
            irow[ow] = (h_start + th.lo * dH) * W + w_start + tw.lo * dW
        else:
            irow[ow] = h_start * W + w_start + tap_offsets[<Py_ssize_t>trow[ow]]


cdef void max_pool_window(const floating* plane, Py_ssize_t H, Py_ssize_t W,
                          Py_ssize_t h0, Py_ssize_t w0, Py_ssize_t kH, Py_ssize_t kW,
                          Py_ssize_t dH, Py_ssize_t dW, floating* out,
                          int64_t* index) noexcept nogil:
    """One window at (h0, w0), tap by tap: the few windows at a row's ends that
    the fast kernels leave (max_pool_row's set-up would cost more than they do)."""
    cdef Py_ssize_t kh, kw, ih, iw, first = -1, best = -1
    cdef floating m = -INFINITY, v
    cdef bint take
    for kh in range(kH):
        ih = h0 + kh * dH
        if ih < 0 or ih >= H:
            continue
        for kw in range(kW):
            iw = w0 + kw * dW
            if iw < 0 or iw >= W:
                continue
            if first < 0:
                first = ih * W + iw
            v = plane[ih * W + iw]
            take = (v > m) | (v != v)
            best = ih * W + iw if take else best  # without a branch (random data
            if floating is float:                 # mispredicts one per window)
                m = cnn_later_max_f(m, v)
            else:
                m = cnn_later_max_d(m, v)
    out[0] = m
    if index != NULL:
        index[0] = best if best >= 0 else first  # nothing beat -inf: the first input


cdef inline floating later_max(floating m, floating v) noexcept nogil:
    """ATen's running maximum: v replaces m if greater, or if NaN."""
    return v if (v > m) | (v != v) else m


cdef void max_pool_row_2x2(const floating* r0, Py_ssize_t W, Py_ssize_t n,
                           floating* orow, floating* trow, int64_t* irow,
                           int64_t first) noexcept nogil:
    """n whole 2x2 stride-2 windows of rows r0, r0 + W, in registers.

    The indices are found again from the maxima in a second pass (the first tap
    equal to the maximum, unless a NaN won, then the last NaN): both passes
    vectorise, as selects; one scalar pass doing both compiled to branches,
    which random data mispredicts, and ran 2-4x slower. `first` is the index
    of r0[0] in its plane; irow NULL: values only.
    """
    cdef const floating* r1 = r0 + W
    cdef floating a, b, c, d, m, tap
    cdef floating tap_c = W, tap_d = W + 1
    cdef Py_ssize_t ow
    for ow in range(n):
        orow[ow] = later_max(later_max(later_max(r0[2 * ow], r0[2 * ow + 1]), r1[2 * ow]),
                             r1[2 * ow + 1])
    if irow == NULL:
        return
    for ow in range(n):
        m = orow[ow]
        a = r0[2 * ow]
        b = r0[2 * ow + 1]
        c = r1[2 * ow]
        d = r1[2 * ow + 1]
        tap = tap_c if c == m else tap_d
        tap = 1 if b == m else tap
        tap = 0 if a == m else tap
        tap = 0 if a != a else tap
        tap = 1 if b != b else tap
        tap = tap_c if c != c else tap
        trow[ow] = tap_d if d != d else tap
    for ow in range(n):
        irow[ow] = first + 2 * ow + <int64_t>trow[ow]


cdef void max_pool_row_3x3s2(const floating* r0, Py_ssize_t o1, Py_ssize_t o2, Py_ssize_t n,
                             floating* orow, floating* trow, int64_t* irow,
                             int64_t first) noexcept nogil:
    """n whole 3x3 stride-2 windows of rows r0, r0 + o1, r0 + o2: as the 2x2 case.
    Normally o1 = W and o2 = 2W; a window row in the padding is given as a copy
    of its neighbour in the image (o1 = 0 at the top, o2 = o1 at the bottom): a
    copy next to its original in the taps' order changes neither the maximum
    nor which tap ATen's rule picks.
    """
    cdef const floating* r1 = r0 + o1
    cdef const floating* r2 = r0 + o2
    cdef floating t0, t1, t2, t3, t4, t5, t6, t7, t8, m, tap
    cdef floating W0 = o1, W1 = o1 + 1, W2 = o1 + 2, V0 = o2, V1 = o2 + 1, V2 = o2 + 2
    cdef Py_ssize_t ow, c
    cdef bint exact = True
    if floating is float:
        exact = cnn_max3x3s2_values(r0, r1, r2, n, orow)
    if exact:
        for ow in range(n):
            c = 2 * ow
            m = later_max(later_max(r0[c], r0[c + 1]), r0[c + 2])
            m = later_max(later_max(later_max(m, r1[c]), r1[c + 1]), r1[c + 2])
            orow[ow] = later_max(later_max(later_max(m, r2[c]), r2[c + 1]), r2[c + 2])
    if irow == NULL:
        return
    for ow in range(n):
        c = 2 * ow
        m = orow[ow]
        t0 = r0[c]; t1 = r0[c + 1]; t2 = r0[c + 2]
        t3 = r1[c]; t4 = r1[c + 1]; t5 = r1[c + 2]
        t6 = r2[c]; t7 = r2[c + 1]; t8 = r2[c + 2]
        tap = V1 if t7 == m else V2
        tap = V0 if t6 == m else tap
        tap = W2 if t5 == m else tap
        tap = W1 if t4 == m else tap
        tap = W0 if t3 == m else tap
        tap = 2 if t2 == m else tap
        tap = 1 if t1 == m else tap
        tap = 0 if t0 == m else tap
        tap = 0 if t0 != t0 else tap
        tap = 1 if t1 != t1 else tap
        tap = 2 if t2 != t2 else tap
        tap = W0 if t3 != t3 else tap
        tap = W1 if t4 != t4 else tap
        tap = W2 if t5 != t5 else tap
        tap = V0 if t6 != t6 else tap
        tap = V1 if t7 != t7 else tap
        trow[ow] = V2 if t8 != t8 else tap
    for ow in range(n):
        irow[ow] = first + 2 * ow + <int64_t>trow[ow]


def max_pool2d_forward(const floating[:, :, ::1] x,     # (planes, H, W)
                       floating[:, :, ::1] out,         # OUT (planes, H_out, W_out)
                       int64_t[:, :, ::1] indices,      # OUT, same shape, if want_indices
                       floating[:, :] taps,             # scratch (threads, W_out)
                       const int64_t[::1] tap_offsets,  # (kH*kW,): kh*dH*W + kw*dW
                       Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t sH, Py_ssize_t sW,
                       Py_ssize_t pH, Py_ssize_t pW, Py_ssize_t dH, Py_ssize_t dW,
                       bint want_indices, int n_threads):
    """ATen's rule: the first maximum wins, a NaN wins over any number (the last NaN).

    A row of outputs at a time. The two commonest windows, 2x2 stride 2 and
    3x3 stride 2, have kernels of their own for the windows whole inside the
    input (3-6x faster); the rest of the row, and every other window, go
    through max_pool_row.
    """
    cdef unsigned int mxcsr = 0
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t H_out = out.shape[1], W_out = out.shape[2]
    # which fast kernel: 2 (2x2), 3 (3x3), 0 none; taps must be exact in floating
    cdef bint plain = dH == 1 and dW == 1 and sH == 2 and sW == 2 and W < (1 << 20)
    cdef int kind = (2 if plain and kH == 2 and kW == 2 else
                     3 if plain and kH == 3 and kW == 3 else 0)
    cdef Span whole = whole_windows_s2(kind, pW, W, W_out)  # the same in every row
    cdef Py_ssize_t p, oh, ow, top, first, left = -pW
    cdef bint inside
    cdef const floating* plane
    cdef floating* orow
    cdef floating* trow
    cdef int64_t* irow = NULL
    cdef int tid = 0
    with nogil, parallel(num_threads=n_threads):
        tid = cnn_thread_id()
        mxcsr = cnn_ftz_begin()
        for p in prange(P, schedule="static"):
            trow = &taps[tid, 0]
            plane = &x[p, 0, 0]
            for oh in range(H_out):
                orow = &out[p, oh, 0]
                irow = &indices[p, oh, 0] if want_indices else NULL
                top = oh * sH - pH
                # 3x3: a row of windows with one row in the padding copies its neighbour
                inside = top >= 0 and top + kind <= H
                if kind == 3 and H >= 2 and (top == -1 or top == H - 2):
                    inside = True
                if kind and whole.count and inside:
                    if kind == 2:
                        first = top * W + left + 2 * whole.lo  # the first input of window lo
                        max_pool_row_2x2(plane + first, W, whole.count, orow + whole.lo, trow,
                                         irow + whole.lo if want_indices else NULL, first)
                    else:
                        first = max(top, 0) * W + left + 2 * whole.lo
                        max_pool_row_3x3s2(plane + first, W if top >= 0 else 0,
                                           W if top < 0 or top + 3 > H else 2 * W,
                                           whole.count, orow + whole.lo,
                                           trow, irow + whole.lo if want_indices else NULL,
                                           first)
                    for ow in range(whole.lo):
                        max_pool_window(plane, H, W, top, left + 2 * ow, kH, kW, 1, 1,
                                        orow + ow, irow + ow if want_indices else NULL)
                    for ow in range(whole.hi, W_out):
                        max_pool_window(plane, H, W, top, left + 2 * ow, kH, kW, 1, 1,
                                        orow + ow, irow + ow if want_indices else NULL)
                else:
                    max_pool_row(plane, H, W, oh, 0, W_out, orow, trow, irow, &tap_offsets[0],
                                 kH, kW, sH, sW, pH, pW, dH, dW)
        cnn_ftz_end(mxcsr)


def max_pool2d_backward(const floating[:, :, ::1] grad_out,   # (planes, H_out, W_out)
                        const int64_t[:, :, ::1] indices,
                        floating[:, :, ::1] grad_input,       # OUT (planes, H, W)
                        int n_threads):
    """grad_input = 0, then grad_input[p].flat[indices[p, l]] += grad_out[p, l].

    The indices are data, not geometry, so each one is checked here, as it is
    used (a pass over them in NumPy to prove them in range took a tenth of the
    forward and backward of 2x2 pooling). Returns how many lay outside [0, H*W);
    those are skipped, and the caller raises.
    """
    cdef unsigned int mxcsr = 0
    cdef Py_ssize_t P = grad_input.shape[0], H = grad_input.shape[1], W = grad_input.shape[2]
    cdef Py_ssize_t H_out = grad_out.shape[1], W_out = grad_out.shape[2]
    cdef Py_ssize_t HW = H * W, L = H_out * W_out
    cdef Py_ssize_t p, l, n_bad = 0
    cdef int64_t i
    cdef floating* dst
    cdef const floating* g
    cdef const int64_t* idx
    with nogil, parallel(num_threads=n_threads):
        mxcsr = cnn_ftz_begin()
        for p in prange(P, schedule="static"):
            dst = &grad_input[p, 0, 0]
            g = &grad_out[p, 0, 0]
            idx = &indices[p, 0, 0]
            memset(dst, 0, HW * sizeof(floating))
            for l in range(L):
                i = idx[l]
                if 0 <= i < HW:
                    dst[i] += g[l]
                else:
                    n_bad += 1
        cnn_ftz_end(mxcsr)
    return n_bad


cdef inline Span avg_window(Py_ssize_t o, Py_ssize_t s, Py_ssize_t pad, Py_ssize_t k,
                            Py_ssize_t size) noexcept nogil:
    """ATen's average-pooling window: count includes padding, [lo, hi) does not."""
    cdef Py_ssize_t a = o * s - pad
    cdef Py_ssize_t b = a + k
    cdef Span r
    if b > size + pad:
        b = size + pad
    r.count = b - a
    if a < 0:
        a = 0
    if b > size:
        b = size
    r.lo = a
    r.hi = b
    return r


def avg_pool2d_forward(const floating[:, :, ::1] x,
                       floating[:, :, ::1] out,     # OUT (planes, H_out, W_out)
                       Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t sH, Py_ssize_t sW,
                       Py_ssize_t pH, Py_ssize_t pW, bint count_include_pad,
                       Py_ssize_t divisor_override, int n_threads):
    """A row of outputs at a time, taps outermost (sums in ATen's order), then the divisors.

    2x2 windows of stride 2 that lie whole inside the input are summed in one
    pass instead (same order, 0 + x00 + x01 + x10 + x11, so the same bits).
    """
    cdef unsigned int mxcsr = 0
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t H_out = out.shape[1], W_out = out.shape[2]
    # whole 2x2 stride-2 windows of a row (unpadded: they start at 0), fast path
    cdef Py_ssize_t n_full = (whole_windows_s2(2, 0, W, W_out).hi if kH == 2 and kW == 2
                              and sH == 2 and sW == 2 and pH == 0 and pW == 0 else 0)
    cdef floating full_divisor = divisor_override if divisor_override > 0 else 4
    cdef Py_ssize_t p, oh, ow, ow0, ih, kw, off_w, divisor
    cdef Span rh, rw, w
    cdef const floating* src
    cdef const floating* r0
    cdef const floating* r1
    cdef floating* orow
    with nogil, parallel(num_threads=n_threads):
        mxcsr = cnn_ftz_begin()
        for p in prange(P, schedule="static"):
            for oh in range(H_out):
                rh = avg_window(oh, sH, pH, kH, H)
                orow = &out[p, oh, 0]
                ow0 = 0
                if n_full and 2 * oh + 1 < H:
                    r0 = &x[p, 2 * oh, 0]
                    r1 = r0 + W
                    for ow in range(n_full):
                        orow[ow] = ((((<floating>0 + r0[2 * ow]) + r0[2 * ow + 1])
                                     + r1[2 * ow]) + r1[2 * ow + 1]) / full_divisor
                    ow0 = n_full
                    if ow0 == W_out:
                        continue
                for ow in range(ow0, W_out):
                    orow[ow] = 0
                for ih in range(rh.lo, rh.hi):
                    src = &x[p, ih, 0]
                    for kw in range(kW):
                        off_w = kw - pW
                        w = valid_range(off_w, sW, W, W_out)
                        for ow in range(max(w.lo, ow0), w.hi):
                            orow[ow] += src[ow * sW + off_w]
                for ow in range(ow0, W_out):
                    rw = avg_window(ow, sW, pW, kW, W)
                    if divisor_override > 0:
                        divisor = divisor_override
                    elif count_include_pad:
                        divisor = rh.count * rw.count
                    else:
                        divisor = (rh.hi - rh.lo) * (rw.hi - rw.lo)
                    if rh.lo >= rh.hi or rw.lo >= rw.hi:
                        orow[ow] = 0
                    else:
                        orow[ow] = orow[ow] / divisor
        cnn_ftz_end(mxcsr)


def avg_pool2d_backward(const floating[:, :, ::1] grad_out,
                        floating[:, :, ::1] grad_input,   # OUT (planes, H, W)
                        floating[:, :] scaled,            # scratch (threads, W_out)
                        Py_ssize_t kH, Py_ssize_t kW, Py_ssize_t sH, Py_ssize_t sW,
                        Py_ssize_t pH, Py_ssize_t pW, bint count_include_pad,
                        Py_ssize_t divisor_override, int n_threads):
    """The forward's adjoint, row by row: divide a row of gradients, then add it back per tap.

    2x2 windows of stride 2 whole inside the input do not overlap: their four
    pixels are written (0 + g / 4, as ATen's zeroed sum) instead of added to,
    and the plane is only zeroed first if some pixel lies outside them.
    """
    cdef unsigned int mxcsr = 0
    cdef Py_ssize_t P = grad_input.shape[0], H = grad_input.shape[1], W = grad_input.shape[2]
    cdef Py_ssize_t H_out = grad_out.shape[1], W_out = grad_out.shape[2]
    # whole 2x2 stride-2 windows of a row (unpadded: they start at 0), fast path
    cdef Py_ssize_t n_full = (whole_windows_s2(2, 0, W, W_out).hi if kH == 2 and kW == 2
                              and sH == 2 and sW == 2 and pH == 0 and pW == 0 else 0)
    cdef bint covered = n_full and 2 * n_full == W and 2 * H_out == H
    cdef floating full_divisor = divisor_override if divisor_override > 0 else 4
    cdef Py_ssize_t p, oh, ow, ow0, ih, kw, off_w, divisor
    cdef Span rh, rw, w
    cdef floating v
    cdef floating* dst
    cdef floating* d0
    cdef floating* d1
    cdef const floating* g
    cdef floating* srow
    cdef int tid = 0
    with nogil, parallel(num_threads=n_threads):
        tid = cnn_thread_id()
        mxcsr = cnn_ftz_begin()
        for p in prange(P, schedule="static"):
            srow = &scaled[tid, 0]
            if not covered:
                memset(&grad_input[p, 0, 0], 0, H * W * sizeof(floating))
            for oh in range(H_out):
                rh = avg_window(oh, sH, pH, kH, H)
                ow0 = 0
                if n_full and 2 * oh + 1 < H:
                    d0 = &grad_input[p, 2 * oh, 0]
                    d1 = d0 + W
                    g = &grad_out[p, oh, 0]
                    for ow in range(n_full):
                        v = <floating>0 + g[ow] / full_divisor
                        d0[2 * ow] = v
                        d0[2 * ow + 1] = v
                        d1[2 * ow] = v
                        d1[2 * ow + 1] = v
                    ow0 = n_full
                    if ow0 == W_out:
                        continue
                for ow in range(ow0, W_out):
                    rw = avg_window(ow, sW, pW, kW, W)
                    if divisor_override > 0:
                        divisor = divisor_override
                    elif count_include_pad:
                        divisor = rh.count * rw.count
                    else:
                        divisor = (rh.hi - rh.lo) * (rw.hi - rw.lo)
                    srow[ow] = grad_out[p, oh, ow] / divisor if rw.lo < rw.hi else 0
                for ih in range(rh.lo, rh.hi):
                    dst = &grad_input[p, ih, 0]
                    for kw in range(kW):
                        off_w = kw - pW
                        w = valid_range(off_w, sW, W, W_out)
                        for ow in range(max(w.lo, ow0), w.hi):
                            dst[ow * sW + off_w] += srow[ow]
        cnn_ftz_end(mxcsr)


# --------------------------------------------------------------------------
# ReLU: one pass each way, branch-free (a select, which the compiler
# vectorises), with PyTorch's NaN rules: relu(NaN) = NaN, and the gradient
# passes wherever the output is not <= 0.
# --------------------------------------------------------------------------

def relu_forward(const floating[::1] x,
                 floating[::1] out,        # OUT (may be x itself)
                 int n_threads):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating v
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            v = x[i]
            out[i] = 0 if v <= 0 else v


def relu_backward(const floating[::1] grad_out,
                  const floating[::1] out,     # the forward's output
                  floating[::1] grad_input,    # OUT (may be grad_out itself)
                  int n_threads):
    cdef Py_ssize_t i, n = grad_out.shape[0]
    cdef floating g
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            g = grad_out[i]  # loaded unconditionally, so the select needs no branch
            grad_input[i] = 0 if out[i] <= 0 else g
