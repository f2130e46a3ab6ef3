"""The worked examples of the course notes (/work/shared/course-notes/), numbers written out.

Each expected array was computed by hand from the note and checked against
torch.nn.functional.  Where a note slips (the stride-0 division in 004, the conv2d
snippet in 004 that flips the input instead of the kernel) we follow PyTorch.
"""

import numpy as np
import pytest

import cnn.functional as F

def nchw(a):
    """A 2-D image -> (1, 1, H, W); a (C, H, W) stack -> (1, C, H, W)."""
    a = np.asarray(a, dtype=np.float64)
    return a.reshape((1,) * (4 - a.ndim) + a.shape)


# ---------------------------------------------------------------- 004 "Edge Detector!"
# 004_a8b86ac06ba7240e.txt: X = [[0,1,2,2],[0,0,1,2],[0,0,0,1]], K = [1, -1]
def test_edge_detector():
    x = nchw([[0, 1, 2, 2], [0, 0, 1, 2], [0, 0, 0, 1]])
    k = nchw([[1, -1]])
    out = F.conv2d(x, k)
    assert out.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [[-1, -1, 0], [0, -1, -1], [0, 0, -1]])


# 001_223adc62828b1c3f.txt "Convolution and Cross-Correlation", 004 "Cross Corr. vs Convolution":
# conv2d is cross-correlation; true convolution is cross-correlation with the kernel rotated
# by 180 degrees (note 004's snippet flips X instead: one of the notes' slips).
def test_convolution_is_correlation_with_flipped_kernel():
    x = nchw([[0, 1, 2, 2], [0, 0, 1, 2], [0, 0, 0, 1]])
    k = nchw([[1, -1]])
    true_convolution = F.conv2d(x, k[..., ::-1, ::-1])
    np.testing.assert_array_equal(true_convolution[0, 0], [[1, 1, 0], [0, 1, 1], [0, 0, 1]])

    rng = np.random.default_rng(0)
    img, ker = rng.standard_normal((6, 7)), rng.standard_normal((3, 2))
    # textbook definition: Z[i, j] = sum_ab K[a, b] X[i - a, j - b] ("full" convolution)
    full = np.zeros((6 + 3 - 1, 7 + 2 - 1))
    for a in range(3):
        for b in range(2):
            full[a:a + 6, b:b + 7] += ker[a, b] * img
    valid = full[2:6, 1:7]
    np.testing.assert_allclose(F.conv2d(nchw(img), nchw(ker[::-1, ::-1]))[0, 0], valid, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- 004 "Multiple I/O Channels"
# 004_a8b86ac06ba7240e.txt: X = [[1,2],[3,4]], [[5,6],[7,8]], [[9,10],[11,12]],
# K = [[-1,-1],[1,1]], [[-2,2],[-2,2]], [[-3,3],[-3,3]], Z = sum_c X_c * K_c.
MC_X = nchw([[[1, 2], [3, 4]], [[5, 6], [7, 8]], [[9, 10], [11, 12]]])
MC_K = np.array([[[[-1, -1], [1, 1]], [[-2, 2], [-2, 2]], [[-3, 3], [-3, 3]]]], dtype=np.float64)


def test_multichannel_per_channel_results_and_sum():
    # per channel: -1-2+3+4 = 4 ; -10+12-14+16 = 4 ; -27+30-33+36 = 6
    per_channel = [F.conv2d(MC_X[:, c:c + 1], MC_K[:, c:c + 1])[0, 0, 0, 0] for c in range(3)]
    assert per_channel == [4.0, 4.0, 6.0]
    out = F.conv2d(MC_X, MC_K)
    assert out.shape == (1, 1, 1, 1)
    assert out[0, 0, 0, 0] == 14.0


def test_multichannel_bias_added_once_per_kernel():
    # 000_0e42899645e9b73c.txt "Convolution and Max Pooling in a CNN": sum over channels, then
    # one bias per kernel
    out = F.conv2d(MC_X, MC_K, bias=np.array([0.5]))
    assert out[0, 0, 0, 0] == 14.5


def test_depthwise_keeps_channels_separate():
    # 004: "this is not the case the depthwise convs, where we keep each channel separate"
    out = F.conv2d(MC_X, MC_K.reshape(3, 1, 2, 2), groups=3)
    assert out.shape == (1, 3, 1, 1)
    np.testing.assert_array_equal(out.ravel(), [4.0, 4.0, 6.0])


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_equals_per_channel_correlation(multiplier):
    # 004 depthwise note; groups == C_in, C_out = multiplier * C_in
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((3 * multiplier, 1, 3, 2))
    out = F.conv2d(x, w, padding=1, groups=3)
    for o in range(3 * multiplier):
        c = o // multiplier
        want = F.conv2d(x[:, c:c + 1], w[o:o + 1], padding=1)[:, 0]
        np.testing.assert_allclose(out[:, o], want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- 004 "1 x 1 Convolution"
# 004_a8b86ac06ba7240e.txt: Z_ij = sum_c RGB_cij K_c (the note writes RGB_1ij three times: a slip)
def test_1x1_conv_literal():
    k = np.array([1.0, 0.5, -1.0]).reshape(1, 3, 1, 1)
    out = F.conv2d(MC_X, k)
    # [[1 + 2.5 - 9, 2 + 3 - 10], [3 + 3.5 - 11, 4 + 4 - 12]]
    np.testing.assert_array_equal(out[0, 0], [[-5.5, -5.0], [-4.5, -4.0]])


def test_1x1_conv_is_per_pixel_linear_map():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 4, 3))
    w = rng.standard_normal((7, 5, 1, 1))
    b = rng.standard_normal(7)
    want = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x) + b[:, None, None]
    np.testing.assert_allclose(F.conv2d(x, w, b), want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- 004 "Other": mirror padding
# 004_a8b86ac06ba7240e.txt: [[1,2,3],[4,5,6],[7,8,9]] mirror padded with p = 1
MIRROR = [[5, 4, 5, 6, 5],
          [2, 1, 2, 3, 2],
          [5, 4, 5, 6, 5],
          [8, 7, 8, 9, 8],
          [5, 4, 5, 6, 5]]
IMG3 = nchw([[1, 2, 3], [4, 5, 6], [7, 8, 9]])


def test_mirror_padding_pad2d():
    np.testing.assert_array_equal(F.pad2d(IMG3, (1, 1, 1, 1), mode="reflect")[0, 0], MIRROR)


def test_mirror_padding_through_conv2d():
    identity_1x1 = nchw([[1.0]])
    np.testing.assert_array_equal(F.conv2d(IMG3, identity_1x1, padding=1, padding_mode="reflect")[0, 0], MIRROR)
    centre_3x3 = nchw([[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(F.conv2d(IMG3, centre_3x3, padding=1, padding_mode="reflect"), IMG3)
    np.testing.assert_array_equal(F.conv2d(IMG3, centre_3x3, padding="same", padding_mode="reflect"), IMG3)
    # a 3x3 box sum over the mirrored image, by hand: top-left 5+4+5+2+1+2+5+4+5 = 33
    box = F.conv2d(IMG3, np.ones((1, 1, 3, 3)), padding=1, padding_mode="reflect")
    np.testing.assert_array_equal(box[0, 0], [[33, 36, 39], [42, 45, 48], [51, 54, 57]])


# ---------------------------------------------------------------- 001 parameter count
# 001_223adc62828b1c3f.txt "Multiple Kernels - Number of Parameters":
# k1 = k2 = 3, N = 4 kernels, 3 input channels -> (3 * 3 * 3 + 1) * 4 = 112
def test_parameter_count_112():
    weight = np.zeros((4, 3, 3, 3))
    bias = np.zeros(4)
    assert weight.size + bias.size == (3 * 3 * 3 + 1) * 4 == 112
    out = F.conv2d(np.ones((1, 3, 8, 8)), weight, bias)
    assert out.shape == (1, 4, 6, 6)


# 003_83f059a3804e5d8a.txt "A variant of dense layers": a 3x3 kernel on a 4x4 image is a 4x16
# matrix (9 shared weights) instead of the dense layer's 64
def test_conv_is_sparse_dense_layer_with_shared_weights():
    rng = np.random.default_rng(3)
    k = rng.standard_normal((3, 3))
    dense = np.zeros((4, 16))
    for o, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        tile = np.zeros((4, 4))
        tile[i:i + 3, j:j + 3] = k
        dense[o] = tile.ravel()
    assert dense.size == 64 and np.count_nonzero(dense) == 4 * 9
    x = rng.standard_normal((4, 4))
    np.testing.assert_allclose(F.conv2d(nchw(x), nchw(k)).ravel(), dense @ x.ravel(), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- equivariance / invariance
# 001 "Invariance v.s. Equivariance", 003 "A variant of dense layers" (equivariant with
# respect to translation), 004 "Convolutions and Pooling hold Very Strong Priors"
@pytest.mark.parametrize("k", [(3, 3), (4, 4), (2, 5)])
@pytest.mark.parametrize("shift", [(1, 0), (0, 2), (-2, 3)])
def test_circular_same_conv_commutes_with_roll(k, shift):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 8, 9))
    w = rng.standard_normal((4, 3) + k)
    conv = lambda a: F.conv2d(a, w, padding="same", padding_mode="circular")
    assert conv(x).shape == (2, 4, 8, 9)
    np.testing.assert_allclose(conv(np.roll(x, shift, axis=(2, 3))), np.roll(conv(x), shift, axis=(2, 3)),
                               rtol=1e-12, atol=1e-12)


def test_valid_conv_output_moves_with_the_input():
    # without wrap-around: cropping the input by (1, 2) crops the output by (1, 2)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 9, 9))
    w = rng.standard_normal((3, 2, 3, 3))
    np.testing.assert_allclose(F.conv2d(x[:, :, 1:, 2:], w), F.conv2d(x, w)[:, :, 1:, 2:], rtol=1e-12, atol=1e-12)


def test_max_pool_invariant_to_shift_inside_window():
    # 001 "Invariance", 003 "Pooling", 004 "Pooling": a feature moved by one pixel inside its
    # pooling window leaves the max-pooled output unchanged
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = 5.0
    x[0, 0, 2, 2] = 7.0
    shifted = np.roll(x, 1, axis=3)  # now at (0, 1) and (2, 3): same 2x2 windows
    for a in (x, shifted):
        np.testing.assert_array_equal(F.max_pool2d(a, 2)[0, 0], [[5.0, 0.0], [0.0, 7.0]])
    # ... while the convolution output moves (equivariance, not invariance)
    k = nchw([[1.0, 2.0], [3.0, 4.0]])
    assert not np.array_equal(F.conv2d(x, k), F.conv2d(shifted, k))
    # the indices still tell where the max was: flat offsets 0 -> 1 and 10 -> 11 (the all-zero
    # windows report their first element: first max wins ties)
    _, idx = F.max_pool2d(x, 2, return_indices=True)
    _, idx_shifted = F.max_pool2d(shifted, 2, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 10]])
    np.testing.assert_array_equal(idx_shifted[0, 0], [[1, 2], [8, 11]])


def test_max_pool_not_invariant_when_max_on_window_edge():
    # 004 "Pooling": "if the maximum value ... lies on the edge of the kernel ... any shift to X
    # would not yield the pooling layer to be shift invariant"
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 1] = 5.0
    np.testing.assert_array_equal(F.max_pool2d(x, 2)[0, 0], [[5.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(F.max_pool2d(np.roll(x, 1, axis=3), 2)[0, 0], [[0.0, 5.0], [0.0, 0.0]])


def test_max_and_mean_pooling_by_hand():
    # 002_77c2c2adcfda0c72.txt "Max/Mean Pooling": 2x2 windows, stride 2 (no overlap)
    x = nchw([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    np.testing.assert_array_equal(F.max_pool2d(x, 2)[0, 0], [[6, 8], [3, 4]])
    np.testing.assert_array_equal(F.avg_pool2d(x, 2)[0, 0], [[3.25, 5.25], [2.0, 2.0]])
    # overlapping windows (stride < kernel, "less common")
    np.testing.assert_array_equal(F.max_pool2d(x, 3, stride=1)[0, 0], [[7, 8], [7, 8]])


def test_pooling_acts_on_each_channel_separately():
    # 004 "Pooling Multiple Channels": "We pool multiple channels separately"
    out = F.max_pool2d(MC_X, 2)
    np.testing.assert_array_equal(out.ravel(), [4, 8, 12])
    np.testing.assert_array_equal(F.avg_pool2d(MC_X, 2).ravel(), [2.5, 6.5, 10.5])


# ---------------------------------------------------------------- output-size formulas
# 004_a8b86ac06ba7240e.txt "Output Dims.": Z = (X + 2P - V) / S + 1
def test_output_dims_examples_of_004():
    assert F.conv2d_output_shape(4, 2) == (3, 3)  # 4x4 X, 2x2 V, "no stride" = stride 1
    assert F.conv2d_output_shape(4, 2, stride=2) == (2, 2)
    assert F.conv2d_output_shape((4, 4), (2, 2), stride=(2, 2), padding=(0, 0)) == (2, 2)
    assert F.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2))).shape == (1, 1, 3, 3)
    assert F.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), stride=2).shape == (1, 1, 2, 2)
    # the note's first example divides by a stride of 0: a slip, and an error here
    with pytest.raises(ValueError, match="stride"):
        F.conv2d_output_shape(4, 2, stride=0)


def test_output_size_formula_with_padding_and_stride():
    # 004 formula with floor, 002 "Padding and Stride Formula", 001 "Valid Convolution":
    # floor((H + 2p - d (k - 1) - 1) / s) + 1, valid = H - k + 1
    for H in range(1, 12):
        for k in range(1, H + 1):
            assert F.conv2d_output_shape(H, k) == (H - k + 1,) * 2
            for s in (1, 2, 3):
                for p in (0, 1, 2):
                    want = (H + 2 * p - k) // s + 1
                    assert F.conv2d_output_shape((H, 5), (k, 1), stride=s, padding=p)[0] == want


def test_same_padding_for_odd_kernels_only():
    # 004 "Padding": p = (k - 1) / 2 keeps the size for odd k; with even k no symmetric
    # padding does (at stride 1)
    for n in (5, 8):
        for k in (1, 3, 5, 7):
            assert F.conv2d_output_shape(n, k, padding=(k - 1) // 2) == (n, n)
        for k in (2, 4):
            assert all(F.conv2d_output_shape(n, k, padding=p) != (n, n) for p in range(4))


def test_invalid_stride_skips_pixels():
    # 001 "Invalide Stride": stride 3 over a 5x5 input (3x3 kernel): one output per axis and
    # the last two rows/columns never reach the output
    assert F.conv2d_output_shape(5, 3, stride=3) == (1, 1)
    x, w = np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3))
    grad_input, _, _ = F.conv2d_backward(np.ones((1, 1, 1, 1)), x, w, stride=3)
    np.testing.assert_array_equal(grad_input[0, 0, :3, :3], np.ones((3, 3)))
    np.testing.assert_array_equal(grad_input[0, 0, 3:, :], 0)
    np.testing.assert_array_equal(grad_input[0, 0, :, 3:], 0)


def test_pool_output_formula_of_000():
    # 000_0e42899645e9b73c.txt: floor((I - P) / S) + 1
    for I in range(2, 13):
        for P in range(1, I + 1):
            for S in range(1, 4):
                want = (I - P) // S + 1
                assert F.pool2d_output_shape(I, P, stride=S) == (want, want)
                assert F.max_pool2d(np.zeros((1, 1, I, I)), P, stride=S).shape == (1, 1, want, want)
    assert F.pool2d_output_shape(6, 2) == (3, 3)  # stride defaults to the window (002)
    assert F.pool2d_output_shape(7, 2) == (3, 3)
    assert F.pool2d_output_shape(7, 2, ceil_mode=True) == (4, 4)


# ---------------------------------------------------------------- receptive field
# 003 "Receptive field": a first-layer 3x3 conv sees 3, a second 3x3 on top of it sees 5;
# 004: r_l = 1 + sum_i (k_i - 1) prod_{j < i} s_j
@pytest.mark.parametrize("s1, want", [(1, 5), (2, 7)])
def test_receptive_field_of_two_3x3_layers(s1, want):
    assert 1 + (3 - 1) + (3 - 1) * s1 == want
    x = np.ones((1, 1, 15, 15))
    w = np.ones((1, 1, 3, 3))
    h = F.conv2d(x, w, stride=s1)
    out = F.conv2d(h, w)
    g_out = np.zeros_like(out)
    g_out[0, 0, 2, 2] = 1.0
    g_h, _, _ = F.conv2d_backward(g_out, h, w)
    g_x, _, _ = F.conv2d_backward(g_h, x, w, stride=s1)
    rows, cols = np.nonzero(g_x[0, 0])
    assert rows.max() - rows.min() + 1 == want
    assert cols.max() - cols.min() + 1 == want


# ---------------------------------------------------------------- 002 transposed convolution
# 002_77c2c2adcfda0c72.txt "Transpose Convolution": scalar-multiply the kernel by each input
# pixel and add the copies up; N = s (M - 1) + k - 2p
TX = nchw([[0, 1], [2, 3]])
TK = nchw([[0, 1], [2, 3]])


def test_transposed_conv_2x2_by_2x2():
    # by hand: 1*K at (0,1), 2*K at (1,0), 3*K at (1,1)
    out = F.conv_transpose2d(TX, TK)
    np.testing.assert_array_equal(out[0, 0], [[0, 0, 1], [0, 4, 6], [4, 12, 9]])


def test_transposed_conv_stride_2_and_padding():
    out = F.conv_transpose2d(TX, TK, stride=2)
    np.testing.assert_array_equal(out[0, 0], [[0, 0, 0, 1], [0, 0, 2, 3], [0, 2, 0, 3], [4, 6, 6, 9]])
    # padding crops p from every side
    out = F.conv_transpose2d(TX, TK, stride=2, padding=1)
    np.testing.assert_array_equal(out[0, 0], [[0, 2], [2, 0]])


def test_transposed_conv_output_size_formula_of_002():
    for M in range(1, 6):
        for k in range(1, 5):
            for s in range(1, 4):
                for p in range(0, 3):
                    N = s * (M - 1) + k - 2 * p
                    if N < 1:
                        continue
                    assert F.conv_transpose2d_output_shape(M, k, stride=s, padding=p) == (N, N)
    assert F.conv_transpose2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), stride=2, padding=1).shape == (1, 1, 5, 5)


def test_transposed_conv_upsamples_when_kernel_bigger_than_one_pixel():
    # 002: "As long as the kernel is >1 pixel, the result will be higher resolution"
    x = np.ones((1, 1, 4, 4))
    assert F.conv_transpose2d(x, np.ones((1, 1, 1, 1))).shape == (1, 1, 4, 4)
    assert F.conv_transpose2d(x, np.ones((1, 1, 2, 2))).shape == (1, 1, 5, 5)
