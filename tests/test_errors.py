"""Bad inputs to cnn.functional raise ValueError / TypeError naming the argument.

Every case in ``CASES`` is one bad call, the error type it must raise and a regex
the message must match: the regex requires the offending argument's name (and,
for shape errors, the offending shape).  ``test_bad_inputs_do_not_crash`` runs all
of them, plus some odd-but-legal inputs, in a child interpreter so that a
segfault in a kernel fails one test instead of killing the session.
"""

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cnn.functional as F


def names(*words, shape=None):
    """Regex requiring every word (a regex alternative is fine) and the shape."""
    parts = [rf"(?=.*(?:{w}))" for w in words]
    if shape is not None:
        parts.append(rf"(?=.*{re.escape(str(tuple(shape)))})")
    return "(?s)^" + "".join(parts)


X_ARG = r"\bx\b"
KERNEL_TOO_BIG = r"(?i)kernel|weight"  # the kernel (weight) outgrows the padded input
OUTPUT_TOO_SMALL = r"(?i)output"
DTYPE = r"(?i)dtype"


def arr(*shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def complex_arr(*shape):
    return arr(*shape).astype(np.complex128)


def object_arr(*shape):
    a = np.empty(shape, dtype=object)
    a.fill(1.0)
    return a


def str_arr(*shape):
    return np.full(shape, "a")


# ---------------------------------------------------------------- the good configurations
# conv2d: x (2, 3, 5, 5), weight (4, 3, 3, 3) -> out (2, 4, 3, 3)
X = arr(2, 3, 5, 5)
W = arr(4, 3, 3, 3, seed=1)
B = arr(4, seed=2)
G = arr(2, 4, 3, 3, seed=3)
# conv_transpose2d: x (2, 4, 3, 3), weight (4, 2, 3, 3) -> out (2, 2, 5, 5)
XT = arr(2, 4, 3, 3)
WT = arr(4, 2, 3, 3, seed=1)
GT = arr(2, 2, 5, 5, seed=3)
# pooling: x (2, 3, 6, 6), kernel 2 -> out (2, 3, 3, 3)
XP = arr(2, 3, 6, 6)
GP = arr(2, 3, 3, 3, seed=3)
IDX = np.tile(np.array([0, 2, 4], dtype=np.int64), (2, 3, 3, 1)) + 12 * np.arange(3).reshape(1, 1, 3, 1)


def conv2d(**kw):
    args = dict(x=X, weight=W, bias=None)
    args.update(kw)
    return lambda: F.conv2d(args.pop("x"), args.pop("weight"), **args)


def conv2d_bwd(**kw):
    args = dict(grad_out=G, x=X, weight=W)
    args.update(kw)
    return lambda: F.conv2d_backward(args.pop("grad_out"), args.pop("x"), args.pop("weight"), **args)


def convt(**kw):
    args = dict(x=XT, weight=WT, bias=None)
    args.update(kw)
    return lambda: F.conv_transpose2d(args.pop("x"), args.pop("weight"), **args)


def convt_bwd(**kw):
    args = dict(grad_out=GT, x=XT, weight=WT)
    args.update(kw)
    return lambda: F.conv_transpose2d_backward(args.pop("grad_out"), args.pop("x"), args.pop("weight"), **args)


def maxpool(**kw):
    args = dict(x=XP, kernel_size=2)
    args.update(kw)
    return lambda: F.max_pool2d(args.pop("x"), args.pop("kernel_size"), **args)


def maxpool_bwd(**kw):
    args = dict(grad_out=GP, indices=IDX, input_shape=XP.shape)
    args.update(kw)
    return lambda: F.max_pool2d_backward(args["grad_out"], args["indices"], args["input_shape"])


def avgpool(**kw):
    args = dict(x=XP, kernel_size=2)
    args.update(kw)
    return lambda: F.avg_pool2d(args.pop("x"), args.pop("kernel_size"), **args)


def avgpool_bwd(**kw):
    args = dict(grad_out=GP, input_shape=XP.shape, kernel_size=2)
    args.update(kw)
    return lambda: F.avg_pool2d_backward(args.pop("grad_out"), args.pop("input_shape"), args.pop("kernel_size"), **args)


def pad(**kw):
    args = dict(x=arr(1, 2, 3, 3), padding=(1, 1, 1, 1))
    args.update(kw)
    return lambda: F.pad2d(args.pop("x"), args.pop("padding"), **args)


def pad_bwd(**kw):
    args = dict(grad_out=arr(1, 2, 5, 5), padding=(1, 1, 1, 1))
    args.update(kw)
    return lambda: F.pad2d_backward(args.pop("grad_out"), args.pop("padding"), **args)


def conv_shape(*a, **kw):
    return lambda: F.conv2d_output_shape(*a, **kw)


def convt_shape(*a, **kw):
    return lambda: F.conv_transpose2d_output_shape(*a, **kw)


def pool_shape(*a, **kw):
    return lambda: F.pool2d_output_shape(*a, **kw)


CASES = []


def case(case_id, exc, match, fn):
    CASES.append(pytest.param(exc, match, fn, id=case_id))


# ---------------------------------------------------------------- hyper-parameters of conv2d and its backward
CONV_PARAM_CASES = [
    ("stride0", dict(stride=0), ValueError, "stride"),
    ("stride_pair0", dict(stride=(1, 0)), ValueError, "stride"),
    ("stride_neg", dict(stride=-1), ValueError, "stride"),
    ("stride_float", dict(stride=2.0), TypeError, "stride"),
    ("stride_bool", dict(stride=True), TypeError, "stride"),
    ("stride_str", dict(stride="2"), TypeError, "stride"),
    ("stride_len3", dict(stride=(1, 1, 1)), ValueError, "stride"),
    ("dilation0", dict(dilation=0), ValueError, "dilation"),
    ("dilation_float", dict(dilation=1.5), TypeError, "dilation"),
    ("dilation_bool", dict(dilation=True), TypeError, "dilation"),
    ("padding_neg", dict(padding=-1), ValueError, "padding"),
    ("padding_pair_neg", dict(padding=(0, -1)), ValueError, "padding"),
    ("padding_len3", dict(padding=(1, 1, 1)), ValueError, "padding"),
    ("padding_float", dict(padding=1.0), TypeError, "padding"),
    ("padding_bool", dict(padding=False), TypeError, "padding"),
    ("padding_unknown_string", dict(padding="full"), ValueError, "padding"),
    ("padding_same_stride2", dict(padding="same", stride=2), ValueError, names("padding|same", "stride")),
    ("padding_mode_unknown", dict(padding_mode="mirror"), ValueError, "padding_mode"),
    ("padding_mode_none", dict(padding_mode=None), (TypeError, ValueError), "padding_mode"),
    ("groups0", dict(groups=0), ValueError, "groups"),
    ("groups_float", dict(groups=1.0), TypeError, "groups"),
    ("groups_bool", dict(groups=True), TypeError, "groups"),
    # 3x3 kernel dilated by 3 spans 7 > 5
    ("kernel_larger_dilated", dict(dilation=3), ValueError, KERNEL_TOO_BIG),
    # reflect needs padding < input size (5)
    ("reflect_padding_ge_input", dict(padding=5, padding_mode="reflect"), ValueError, "padding"),
    ("reflect_padding_ge_input_W", dict(padding=(0, 5), padding_mode="reflect"), ValueError, "padding"),
]
# grad_out shaped like the output these settings would give, so that only the setting is wrong
BWD_GRAD_OUT = {
    "reflect_padding_ge_input": arr(2, 4, 13, 13),
    "reflect_padding_ge_input_W": arr(2, 4, 3, 13),
}
for cid, kw, exc, match in CONV_PARAM_CASES:
    case(f"conv2d-{cid}", exc, match, conv2d(**kw))
    bwd_kw = dict(kw, grad_out=BWD_GRAD_OUT[cid]) if cid in BWD_GRAD_OUT else kw
    case(f"conv2d_backward-{cid}", exc, match, conv2d_bwd(**bwd_kw))

# ---------------------------------------------------------------- arrays of conv2d
CONV_ARRAY_CASES = [
    ("x_3d", dict(x=arr(3, 5, 5)), ValueError, names(X_ARG, shape=(3, 5, 5))),
    ("x_5d", dict(x=arr(1, 2, 3, 5, 5)), ValueError, names(X_ARG, shape=(1, 2, 3, 5, 5))),
    ("weight_3d", dict(weight=arr(4, 3, 3)), ValueError, names("weight", shape=(4, 3, 3))),
    ("channel_mismatch", dict(weight=arr(4, 2, 3, 3)), ValueError, names("weight", shape=(4, 2, 3, 3))),
    ("groups_not_dividing_C_in", dict(groups=2, weight=arr(4, 1, 3, 3)), ValueError, "groups"),
    ("groups_not_dividing_C_out", dict(x=arr(2, 4, 5, 5), weight=arr(3, 2, 3, 3), groups=2), ValueError, "groups"),
    ("kernel_larger_than_input", dict(weight=arr(4, 3, 6, 6)), ValueError, KERNEL_TOO_BIG),
    ("kernel_larger_than_padded_input", dict(weight=arr(4, 3, 8, 8), padding=1), ValueError, KERNEL_TOO_BIG),
    ("kernel_larger_W_only", dict(weight=arr(4, 3, 1, 6)), ValueError, KERNEL_TOO_BIG),
    ("x_complex", dict(x=complex_arr(2, 3, 5, 5)), TypeError, X_ARG),
    ("x_object", dict(x=object_arr(2, 3, 5, 5)), TypeError, X_ARG),
    ("x_str", dict(x=str_arr(2, 3, 5, 5)), TypeError, X_ARG),
    ("x_none", dict(x=None), TypeError, X_ARG),
    ("weight_complex", dict(weight=complex_arr(4, 3, 3, 3)), TypeError, "weight"),
    ("weight_object", dict(weight=object_arr(4, 3, 3, 3)), TypeError, "weight"),
    ("weight_str", dict(weight=str_arr(4, 3, 3, 3)), TypeError, "weight"),
    ("x32_weight64", dict(x=X.astype(np.float32)), TypeError, DTYPE),
    ("x64_weight32", dict(weight=W.astype(np.float32)), TypeError, DTYPE),
]
for cid, kw, exc, match in CONV_ARRAY_CASES:
    case(f"conv2d-{cid}", exc, match, conv2d(**kw))
    case(f"conv2d_backward-{cid}", exc, match, conv2d_bwd(**kw))

case("conv2d-bias_wrong_length", ValueError, names("bias", shape=(3,)), conv2d(bias=arr(3)))
case("conv2d-bias_2d", ValueError, names("bias", shape=(4, 1)), conv2d(bias=arr(4, 1)))
case("conv2d-bias_complex", TypeError, "bias", conv2d(bias=complex_arr(4)))

for cid, g in [
    ("spatial", arr(2, 4, 4, 4)),
    ("channels", arr(2, 5, 3, 3)),
    ("batch", arr(1, 4, 3, 3)),
    ("3d", arr(4, 3, 3)),
]:
    case(f"conv2d_backward-grad_out_wrong_{cid}", ValueError, names("grad_out", shape=g.shape), conv2d_bwd(grad_out=g))
case("conv2d_backward-grad_out_complex", TypeError, "grad_out", conv2d_bwd(grad_out=complex_arr(2, 4, 3, 3)))
case("conv2d_backward-grad_out32_x64", TypeError, DTYPE, conv2d_bwd(grad_out=G.astype(np.float32)))
# stride 2 gives a (2, 4, 2, 2) output: the default grad_out no longer fits
case("conv2d_backward-grad_out_for_other_stride", ValueError, "grad_out", conv2d_bwd(stride=2))

# ---------------------------------------------------------------- conv_transpose2d and its backward
CONVT_CASES = [
    ("stride0", dict(stride=0), ValueError, "stride"),
    ("stride_float", dict(stride=2.0), TypeError, "stride"),
    ("stride_bool", dict(stride=True), TypeError, "stride"),
    ("dilation0", dict(dilation=0), ValueError, "dilation"),
    ("padding_neg", dict(padding=-1), ValueError, "padding"),
    ("padding_float", dict(padding=1.0), TypeError, "padding"),
    ("padding_string", dict(padding="same"), (TypeError, ValueError), "padding"),
    ("output_padding_neg", dict(output_padding=-1), ValueError, "output_padding"),
    ("output_padding_float", dict(output_padding=1.0), TypeError, "output_padding"),
    ("output_padding_bool", dict(output_padding=True), TypeError, "output_padding"),
    # must be smaller than stride or dilation
    ("output_padding_ge_stride_and_dilation", dict(output_padding=1), ValueError, "output_padding"),
    ("output_padding_ge_stride2_and_dilation2", dict(output_padding=2, stride=2, dilation=2), ValueError, "output_padding"),
    ("output_padding_W_too_big", dict(output_padding=(0, 2), stride=2), ValueError, "output_padding"),
    ("groups0", dict(groups=0), ValueError, "groups"),
    ("groups_not_dividing_C_in", dict(groups=3), ValueError, "groups"),
    ("x_3d", dict(x=arr(4, 3, 3)), ValueError, names(X_ARG, shape=(4, 3, 3))),
    ("weight_3d", dict(weight=arr(4, 2, 3)), ValueError, names("weight", shape=(4, 2, 3))),
    ("channel_mismatch", dict(weight=arr(3, 2, 3, 3)), ValueError, names("weight", shape=(3, 2, 3, 3))),
    # (1 - 1) * 1 - 2 * 2 + (3 - 1) + 1 = -1
    ("output_size_lt_1", dict(x=arr(2, 4, 1, 1), padding=2), ValueError, OUTPUT_TOO_SMALL),
    ("x_complex", dict(x=complex_arr(2, 4, 3, 3)), TypeError, X_ARG),
    ("x_object", dict(x=object_arr(2, 4, 3, 3)), TypeError, X_ARG),
    ("x_str", dict(x=str_arr(2, 4, 3, 3)), TypeError, X_ARG),
    ("weight_complex", dict(weight=complex_arr(4, 2, 3, 3)), TypeError, "weight"),
    ("x32_weight64", dict(x=XT.astype(np.float32)), TypeError, DTYPE),
]
for cid, kw, exc, match in CONVT_CASES:
    case(f"conv_transpose2d-{cid}", exc, match, convt(**kw))
    case(f"conv_transpose2d_backward-{cid}", exc, match, convt_bwd(**kw))
case("conv_transpose2d-bias_wrong_length", ValueError, names("bias", shape=(4,)), convt(bias=arr(4)))
case("conv_transpose2d-bias_complex", TypeError, "bias", convt(bias=complex_arr(2)))
for cid, g in [
    ("spatial", arr(2, 2, 4, 4)),
    ("channels", arr(2, 4, 5, 5)),
    ("batch", arr(1, 2, 5, 5)),
    ("3d", arr(2, 5, 5)),
]:
    case(f"conv_transpose2d_backward-grad_out_wrong_{cid}", ValueError, names("grad_out", shape=g.shape),
         convt_bwd(grad_out=g))
case("conv_transpose2d_backward-grad_out_complex", TypeError, "grad_out", convt_bwd(grad_out=complex_arr(2, 2, 5, 5)))
case("conv_transpose2d_backward-grad_out32_x64", TypeError, DTYPE, convt_bwd(grad_out=GT.astype(np.float32)))

# ---------------------------------------------------------------- pooling
POOL_CASES = [
    ("kernel_size0", dict(kernel_size=0), ValueError, "kernel_size"),
    ("kernel_size_len3", dict(kernel_size=(2, 2, 2)), ValueError, "kernel_size"),
    ("kernel_size_float", dict(kernel_size=2.0), TypeError, "kernel_size"),
    ("kernel_size_bool", dict(kernel_size=True), TypeError, "kernel_size"),
    ("stride0", dict(stride=0), ValueError, "stride"),
    ("stride_float", dict(stride=2.0), TypeError, "stride"),
    ("stride_bool", dict(stride=True), TypeError, "stride"),
    ("padding_neg", dict(padding=-1), ValueError, "padding"),
    ("padding_float", dict(padding=1.0), TypeError, "padding"),
    ("padding_bool", dict(padding=True), TypeError, "padding"),
    ("padding_gt_half_kernel", dict(padding=2), ValueError, "padding"),
    ("padding_gt_half_kernel3", dict(kernel_size=3, padding=2), ValueError, "padding"),
    ("padding_gt_half_kernel_W", dict(kernel_size=(4, 2), padding=(2, 2)), ValueError, "padding"),
]
for cid, kw, exc, match in POOL_CASES:
    case(f"max_pool2d-{cid}", exc, match, maxpool(**kw))
    case(f"avg_pool2d-{cid}", exc, match, avgpool(**kw))
    case(f"avg_pool2d_backward-{cid}", exc, match, avgpool_bwd(**kw))
POOL_X_CASES = [
    ("x_3d", dict(x=arr(3, 6, 6)), ValueError, names(X_ARG, shape=(3, 6, 6))),
    ("x_complex", dict(x=complex_arr(2, 3, 6, 6)), TypeError, X_ARG),
    ("x_object", dict(x=object_arr(2, 3, 6, 6)), TypeError, X_ARG),
    ("x_str", dict(x=str_arr(2, 3, 6, 6)), TypeError, X_ARG),
    ("kernel_larger_than_input", dict(x=arr(2, 3, 2, 2), kernel_size=3), ValueError, r"(?i)kernel|output"),
]
for cid, kw, exc, match in POOL_X_CASES:
    case(f"max_pool2d-{cid}", exc, match, maxpool(**kw))
    case(f"avg_pool2d-{cid}", exc, match, avgpool(**kw))
case("max_pool2d-dilation0", ValueError, "dilation", maxpool(dilation=0))
case("max_pool2d-dilation_float", TypeError, "dilation", maxpool(dilation=1.0))
# 2x2 kernel dilated by 7 spans 8 > 6
case("max_pool2d-kernel_larger_dilated", ValueError, r"(?i)kernel|output|dilation", maxpool(dilation=7))
case("avg_pool2d-divisor_override0", ValueError, "divisor_override", avgpool(divisor_override=0))
case("avg_pool2d-divisor_override_float", TypeError, "divisor_override", avgpool(divisor_override=1.5))
case("avg_pool2d_backward-divisor_override0", ValueError, "divisor_override", avgpool_bwd(divisor_override=0))

# max_pool2d_backward
BAD_IDX_NEG = IDX.copy()
BAD_IDX_NEG[1, 2, 0, 1] = -1
BAD_IDX_BIG = IDX.copy()
BAD_IDX_BIG[0, 1, 2, 2] = 36  # == H * W
case("max_pool2d_backward-indices_negative", ValueError, "indices", maxpool_bwd(indices=BAD_IDX_NEG))
case("max_pool2d_backward-indices_ge_HW", ValueError, "indices", maxpool_bwd(indices=BAD_IDX_BIG))
case("max_pool2d_backward-indices_wrong_shape", ValueError, names("indices", shape=(2, 3, 3, 2)),
     maxpool_bwd(indices=IDX[..., :2]))
case("max_pool2d_backward-grad_out_wrong_shape", ValueError, names("grad_out", shape=(2, 3, 3, 2)),
     maxpool_bwd(grad_out=GP[..., :2]))
case("max_pool2d_backward-grad_out_3d", ValueError, names("grad_out", shape=(3, 3, 3)), maxpool_bwd(grad_out=GP[0]))
case("max_pool2d_backward-batch_mismatch_input_shape", ValueError, r"grad_out|input_shape",
     maxpool_bwd(grad_out=GP[:1], indices=IDX[:1]))
case("max_pool2d_backward-input_shape_len3", ValueError, "input_shape", maxpool_bwd(input_shape=(3, 6, 6)))
case("max_pool2d_backward-grad_out_complex", TypeError, "grad_out", maxpool_bwd(grad_out=GP.astype(np.complex128)))

# avg_pool2d_backward
for cid, g in [("spatial", arr(2, 3, 2, 3)), ("channels", arr(2, 4, 3, 3)), ("3d", arr(3, 3, 3))]:
    case(f"avg_pool2d_backward-grad_out_wrong_{cid}", ValueError, names("grad_out", shape=g.shape), avgpool_bwd(grad_out=g))
case("avg_pool2d_backward-input_shape_len3", ValueError, "input_shape", avgpool_bwd(input_shape=(3, 6, 6)))
case("avg_pool2d_backward-grad_out_complex", TypeError, "grad_out", avgpool_bwd(grad_out=GP.astype(np.complex128)))
case("avg_pool2d_backward-grad_out_for_other_stride", ValueError, "grad_out", avgpool_bwd(stride=1))

# ---------------------------------------------------------------- pad2d and its backward
case("pad2d-x_3d", ValueError, names(X_ARG, shape=(2, 3, 3)), pad(x=arr(2, 3, 3)))
case("pad2d-x_complex", TypeError, X_ARG, pad(x=complex_arr(1, 2, 3, 3)))
case("pad2d-x_object", TypeError, X_ARG, pad(x=object_arr(1, 2, 3, 3)))
case("pad2d-x_str", TypeError, X_ARG, pad(x=str_arr(1, 2, 3, 3)))
case("pad2d-padding_len3", ValueError, "padding", pad(padding=(1, 1, 1)))
case("pad2d-padding_neg", ValueError, "padding", pad(padding=(1, -1, 1, 1)))
case("pad2d-padding_float", TypeError, "padding", pad(padding=(1, 1.0, 1, 1)))
case("pad2d-padding_bool", TypeError, "padding", pad(padding=(1, 1, True, 1)))
case("pad2d-mode_unknown", ValueError, "mode", pad(mode="mirror"))
case("pad2d-reflect_padding_ge_W", ValueError, "padding", pad(padding=(3, 0, 0, 0), mode="reflect"))
case("pad2d-reflect_padding_ge_H", ValueError, "padding", pad(padding=(0, 0, 0, 3), mode="reflect"))
case("pad2d_backward-grad_out_3d", ValueError, names("grad_out", shape=(2, 5, 5)), pad_bwd(grad_out=arr(2, 5, 5)))
case("pad2d_backward-grad_out_complex", TypeError, "grad_out", pad_bwd(grad_out=complex_arr(1, 2, 5, 5)))
# a 3-wide grad_out cannot come from padding 2 + 2 around a >= 1-wide input
case("pad2d_backward-grad_out_smaller_than_padding", ValueError, r"grad_out|padding",
     pad_bwd(grad_out=arr(1, 2, 3, 3), padding=(2, 2, 0, 0)))
case("pad2d_backward-padding_neg", ValueError, "padding", pad_bwd(padding=(1, 1, -1, 1)))
case("pad2d_backward-padding_len3", ValueError, "padding", pad_bwd(padding=(1, 1, 1)))
case("pad2d_backward-mode_unknown", ValueError, "mode", pad_bwd(mode="mirror"))
# grad_out 5 wide = 1 + 2 + 2: reflect padding 2 is not smaller than the input width 1
case("pad2d_backward-reflect_padding_ge_input", ValueError, "padding",
     pad_bwd(grad_out=arr(1, 2, 3, 5), padding=(2, 2, 0, 0), mode="reflect"))

# ---------------------------------------------------------------- None where an array is required
case("conv2d-weight_none", TypeError, "weight", conv2d(weight=None))
case("conv2d_backward-weight_none", TypeError, "weight", conv2d_bwd(weight=None))
case("conv2d_backward-grad_out_none", TypeError, "grad_out", conv2d_bwd(grad_out=None))
case("conv_transpose2d-x_none", TypeError, X_ARG, convt(x=None))
case("conv_transpose2d-weight_none", TypeError, "weight", convt(weight=None))
case("conv_transpose2d_backward-grad_out_none", TypeError, "grad_out", convt_bwd(grad_out=None))
case("max_pool2d-x_none", TypeError, X_ARG, maxpool(x=None))
case("avg_pool2d-x_none", TypeError, X_ARG, avgpool(x=None))
case("max_pool2d_backward-grad_out_none", TypeError, "grad_out", maxpool_bwd(grad_out=None))
case("max_pool2d_backward-indices_none", TypeError, "indices", maxpool_bwd(indices=None))
case("avg_pool2d_backward-grad_out_none", TypeError, "grad_out", avgpool_bwd(grad_out=None))
case("pad2d-x_none", TypeError, X_ARG, pad(x=None))
case("pad2d_backward-grad_out_none", TypeError, "grad_out", pad_bwd(grad_out=None))

# ---------------------------------------------------------------- shape helpers
case("conv2d_output_shape-stride0", ValueError, "stride", conv_shape(5, 3, stride=0))
case("conv2d_output_shape-stride_float", TypeError, "stride", conv_shape(5, 3, stride=2.0))
case("conv2d_output_shape-stride_bool", TypeError, "stride", conv_shape(5, 3, stride=True))
case("conv2d_output_shape-dilation0", ValueError, "dilation", conv_shape(5, 3, dilation=0))
case("conv2d_output_shape-padding_neg", ValueError, "padding", conv_shape(5, 3, padding=-1))
case("conv2d_output_shape-padding_float", TypeError, "padding", conv_shape(5, 3, padding=1.0))
case("conv2d_output_shape-kernel_size0", ValueError, "kernel_size", conv_shape(5, 0))
case("conv2d_output_shape-kernel_size_float", TypeError, "kernel_size", conv_shape(5, 3.0))
case("conv2d_output_shape-output_lt_1", ValueError, r"(?i)kernel|output", conv_shape((5, 2), 3))
case("conv2d_output_shape-output_lt_1_dilated", ValueError, r"(?i)kernel|output|dilation", conv_shape(5, 3, dilation=3))
case("conv2d_output_shape-input_size_len3", ValueError, "input_size", conv_shape((5, 5, 5), 3))
case("conv2d_output_shape-input_size_float", TypeError, "input_size", conv_shape(5.0, 3))
case("conv_transpose2d_output_shape-output_padding_ge", ValueError, "output_padding", convt_shape(3, 3, output_padding=1))
case("conv_transpose2d_output_shape-output_padding_ge_W", ValueError, "output_padding",
     convt_shape(3, 3, stride=2, output_padding=(1, 2)))
case("conv_transpose2d_output_shape-stride0", ValueError, "stride", convt_shape(3, 3, stride=0))
case("conv_transpose2d_output_shape-dilation0", ValueError, "dilation", convt_shape(3, 3, dilation=0))
case("conv_transpose2d_output_shape-padding_neg", ValueError, "padding", convt_shape(3, 3, padding=-1))
case("conv_transpose2d_output_shape-stride_bool", TypeError, "stride", convt_shape(3, 3, stride=True))
case("conv_transpose2d_output_shape-output_lt_1", ValueError, OUTPUT_TOO_SMALL, convt_shape(1, 3, padding=2))
case("pool2d_output_shape-padding_gt_half_kernel", ValueError, "padding", pool_shape(6, 2, padding=2))
case("pool2d_output_shape-stride0", ValueError, "stride", pool_shape(6, 2, stride=0))
case("pool2d_output_shape-kernel_size0", ValueError, "kernel_size", pool_shape(6, 0))
case("pool2d_output_shape-dilation0", ValueError, "dilation", pool_shape(6, 2, dilation=0))
case("pool2d_output_shape-padding_neg", ValueError, "padding", pool_shape(6, 2, padding=-1))
case("pool2d_output_shape-kernel_size_float", TypeError, "kernel_size", pool_shape(6, 2.0))
case("pool2d_output_shape-stride_bool", TypeError, "stride", pool_shape(6, 2, stride=True))
case("pool2d_output_shape-output_lt_1", ValueError, r"(?i)kernel|output", pool_shape(2, 3))


@pytest.mark.parametrize("exc, match, fn", CASES)
def test_bad_input_raises(exc, match, fn):
    with pytest.raises(exc, match=match):
        fn()


# ---------------------------------------------------------------- what must be accepted
def test_output_padding_smaller_than_dilation_is_accepted():
    # torch: output_padding must be smaller than *either* stride or dilation
    out = F.conv_transpose2d(XT, WT, stride=1, dilation=2, output_padding=1)
    assert out.shape == (2, 2, 8, 8)
    assert F.conv_transpose2d_output_shape(3, 3, stride=1, output_padding=1, dilation=2) == (8, 8)


def test_pool_padding_exactly_half_kernel_is_accepted():
    assert F.max_pool2d(XP, 2, padding=1).shape == (2, 3, 4, 4)
    assert F.avg_pool2d(XP, 2, padding=1).shape == (2, 3, 4, 4)
    assert F.pool2d_output_shape(6, 2, padding=1) == (4, 4)


def test_reflect_padding_one_less_than_input_is_accepted():
    x = arr(1, 1, 3, 3)
    assert F.pad2d(x, (2, 2, 2, 2), mode="reflect").shape == (1, 1, 7, 7)
    assert F.conv2d(x, arr(1, 1, 3, 3), padding=2, padding_mode="reflect").shape == (1, 1, 5, 5)


def test_numpy_integer_hyper_parameters_are_accepted():
    ref = F.conv2d(X, W, stride=2, padding=1)
    np.testing.assert_array_equal(F.conv2d(X, W, stride=np.int64(2), padding=np.int32(1)), ref)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_integer_and_bool_arrays_give_float64(dtype):
    rng = np.random.default_rng(5)
    xi = rng.integers(0, 2, size=(2, 3, 5, 5)).astype(dtype)
    wi = rng.integers(0, 2, size=(4, 3, 3, 3)).astype(dtype)
    xf, wf = xi.astype(np.float64), wi.astype(np.float64)

    out = F.conv2d(xi, wi)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, F.conv2d(xf, wf))

    gi = rng.integers(0, 2, size=(2, 4, 3, 3)).astype(dtype)
    for got, want in zip(F.conv2d_backward(gi, xi, wi), F.conv2d_backward(gi.astype(np.float64), xf, wf)):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)

    wti = rng.integers(0, 2, size=(3, 2, 3, 3)).astype(dtype)
    out = F.conv_transpose2d(xi, wti)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, F.conv_transpose2d(xf, wti.astype(np.float64)))

    for fn in (lambda a: F.max_pool2d(a, 2), lambda a: F.avg_pool2d(a, 2),
               lambda a: F.pad2d(a, (1, 2, 0, 1), mode="reflect")):
        out = fn(xi)
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, fn(xf))


def test_int32_indices_are_accepted():
    out, idx = F.max_pool2d(XP, 2, return_indices=True)
    want = F.max_pool2d_backward(GP, idx, XP.shape)
    np.testing.assert_array_equal(F.max_pool2d_backward(GP, idx.astype(np.int32), XP.shape), want)


# ---------------------------------------------------------------- no crash
# Odd but maybe legal inputs: each must either return or raise ValueError/TypeError.
EXTRA = {
    "conv2d-empty_batch": lambda: F.conv2d(arr(0, 3, 5, 5), W),
    "conv2d-zero_channels": lambda: F.conv2d(arr(2, 0, 5, 5), arr(4, 0, 3, 3)),
    "conv2d-zero_height": lambda: F.conv2d(arr(2, 3, 0, 5), W),
    "conv2d-zero_out_channels": lambda: F.conv2d(X, arr(0, 3, 3, 3)),
    "conv2d-huge_stride": lambda: F.conv2d(X, W, stride=2**40),
    "conv2d-huge_padding": lambda: F.conv2d(X, W, padding=2**62),
    "conv2d-huge_dilation": lambda: F.conv2d(X, W, dilation=2**62),
    "conv2d-huge_groups": lambda: F.conv2d(X, W, groups=2**62),
    "conv2d-list_input": lambda: F.conv2d(X.tolist(), W.tolist()),
    "conv2d-circular_padding_gt_input": lambda: F.conv2d(X, W, padding=6, padding_mode="circular"),
    "conv2d-bias_float32_x_float64": lambda: F.conv2d(X, W, bias=B.astype(np.float32)),
    "conv2d-nan_input": lambda: F.conv2d(np.full_like(X, np.nan), W),
    "conv2d_backward-empty_batch": lambda: F.conv2d_backward(arr(0, 4, 3, 3), arr(0, 3, 5, 5), W),
    "conv_transpose2d-huge_output_padding": lambda: F.conv_transpose2d(XT, WT, stride=2**62, output_padding=2**61),
    "max_pool2d-huge_kernel": lambda: F.max_pool2d(XP, 2**62),
    "max_pool2d-huge_stride": lambda: F.max_pool2d(XP, 2, stride=2**62),
    "max_pool2d-zero_height": lambda: F.max_pool2d(arr(2, 3, 0, 6), 2),
    "max_pool2d_backward-float_indices": lambda: F.max_pool2d_backward(GP, IDX.astype(np.float64), XP.shape),
    "max_pool2d_backward-huge_indices": lambda: F.max_pool2d_backward(GP, IDX + 2**62, XP.shape),
    "max_pool2d_backward-min_int_indices": lambda: F.max_pool2d_backward(GP, np.full_like(IDX, -2**63), XP.shape),
    "max_pool2d_backward-input_shape_negative": lambda: F.max_pool2d_backward(GP, IDX, (2, 3, -6, 6)),
    "max_pool2d_backward-input_shape_smaller": lambda: F.max_pool2d_backward(GP, IDX, (2, 3, 2, 2)),
    # a dilated window wholly in padding: torch returns -inf and an index outside the plane
    "max_pool2d_backward-indices_of_window_in_padding": lambda: F.max_pool2d_backward(
        np.ones((1, 1, 1, 2)),
        F.max_pool2d(arr(1, 1, 1, 5), (2, 4), padding=(1, 2), dilation=(2, 1), ceil_mode=True,
                     return_indices=True)[1],
        (1, 1, 1, 5)),
    "avg_pool2d-huge_divisor": lambda: F.avg_pool2d(XP, 2, divisor_override=2**62),
    "avg_pool2d_backward-input_shape_negative": lambda: F.avg_pool2d_backward(GP, (2, 3, -6, 6), 2),
    "pad2d-circular_padding_gt_input": lambda: F.pad2d(arr(1, 1, 2, 2), (3, 0, 0, 0), mode="circular"),
    "pad2d-huge_padding": lambda: F.pad2d(arr(1, 1, 2, 2), (2**62, 0, 0, 0)),
    "pad2d_backward-circular_padding_gt_input": lambda: F.pad2d_backward(arr(1, 1, 2, 5), (3, 0, 0, 0), mode="circular"),
    "pad2d-empty_batch_reflect": lambda: F.pad2d(arr(0, 1, 3, 3), (1, 1, 1, 1), mode="reflect"),
}

_CHILD = textwrap.dedent(
    """
    import faulthandler, importlib.util, sys
    faulthandler.enable()
    spec = importlib.util.spec_from_file_location("_errors_cases", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bad = []
    for p in mod.CASES:
        exc, match, fn = p.values
        print("case", p.id, flush=True)
        try:
            fn()
        except (ValueError, TypeError):
            continue
        except BaseException as e:
            bad.append(f"{p.id}: {type(e).__name__}: {e}")
            continue
        bad.append(f"{p.id}: returned without raising")
    for name, fn in mod.EXTRA.items():
        print("case", name, flush=True)
        try:
            fn()
        except (ValueError, TypeError, MemoryError):
            pass
        except BaseException as e:
            bad.append(f"{name}: {type(e).__name__}: {e}")
    print("BAD:", *bad, sep="\\n")
    sys.exit(1 if bad else 0)
    """
)


def test_bad_inputs_do_not_crash():
    """Every bad input raises ValueError/TypeError; none segfaults or hangs."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, os.path.abspath(__file__)],
        capture_output=True, text=True, timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("case ")][-1:]
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode} (negative = killed by a signal) after {last}\n"
        f"{proc.stdout[proc.stdout.find('BAD:'):] if 'BAD:' in proc.stdout else ''}\n{proc.stderr[-3000:]}"
    )
