"""cnn.functional against torch.nn.functional on random configurations.

Torch is the reference, run in float64 on the very values cnn sees (float32 inputs
are rounded first, then widened), so one reference serves both dtypes.  Tolerances
are per output element and scale with that element's magnitude: ``absref`` is the
same op run on |x|, |weight|, |grad_out| (the sum of the absolute terms), and

    float64: |got - ref| <= 1e-10 * absref
    float32: |got - ref| <= 1e-5 * sqrt(K) * absref    (K = terms summed per element)

Pooling values, indices and padding are compared exactly.  Each configuration
builder takes a drawer: Hypothesis runs it derandomized (about 100 examples in
all, shrinkable), and a seeded NumPy sweep runs the same builders on more varied
configurations (derandomized Hypothesis repeats itself a lot in so few examples).
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import cnn.functional as F  # noqa: E402

DTYPES = [np.float32, np.float64]
TORCH_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


@pytest.fixture(autouse=True, scope="module")
def _torch_on_one_thread():
    # tiny tensors: torch's thread pool only spins (3x slower on a busy 2-core machine)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def fixed(n):
    return settings(max_examples=n, derandomize=True, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ---------------------------------------------------------------- drawers
class HypothesisDraw:
    def __init__(self, draw):
        self._draw = draw

    def int(self, lo, hi):
        return self._draw(st.integers(lo, hi))

    def pick(self, seq):
        return self._draw(st.sampled_from(seq))

    def flag(self):
        return self._draw(st.booleans())

    def require(self, condition):
        assume(condition)


class Reject(Exception):
    pass


class RngDraw:
    def __init__(self, rng):
        self._rng = rng

    def int(self, lo, hi):
        return int(self._rng.integers(lo, hi + 1))

    def pick(self, seq):
        return seq[int(self._rng.integers(len(seq)))]

    def flag(self):
        return bool(self._rng.integers(2))

    def require(self, condition):
        if not condition:
            raise Reject


def cases(builder):
    """A Hypothesis strategy from a builder."""
    return st.composite(lambda draw: builder(HypothesisDraw(draw)))()


def seeded(builder, seed):
    """The first valid configuration a seeded NumPy generator gives the builder."""
    rng = np.random.default_rng([20240601, seed])
    while True:
        try:
            return builder(RngDraw(rng))
        except Reject:
            pass


SWEEP = range(40)

# ---------------------------------------------------------------- helpers
def data(seed, shape, dtype, kind="normal"):
    rng = np.random.default_rng(seed)
    if kind == "ties":
        a = rng.integers(0, 3, size=shape).astype(np.float64)
    else:
        a = rng.standard_normal(shape)
    return a.astype(dtype)


def relayout(a, how):
    """The same values in another memory layout: cnn must not care."""
    if how == "C":
        return a
    if how == "F":
        return np.asfortranarray(a)
    if how == "strided":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if how == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a
    raise AssertionError(how)


LAYOUTS = ["C", "C", "F", "strided", "readonly"]


def T(a):
    """float64 torch tensor of a numpy array (after its own dtype's rounding)."""
    return torch.from_numpy(np.array(a, dtype=np.float64))


def N(t):
    return t.detach().numpy()


def check(got, ref, absref, dtype, K, what):
    got = np.asarray(got)
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, torch {ref.shape}"
    rtol = 1e-10 if dtype == np.float64 else 1e-5 * math.sqrt(K)
    err = np.abs(got.astype(np.float64) - ref)
    bound = rtol * absref
    bad = ~(err <= bound)  # also catches NaN
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{what} ({np.dtype(dtype)}): {bad.sum()} of {bad.size} elements off; first at {i}: "
            f"got {got[i]!r}, torch {ref[i]!r}, allowed error {bound[i]:.3g}, "
            f"max error {err.max():.3g}")


def check_exact(got, ref, dtype, what):
    got = np.asarray(got)
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, torch {ref.shape}"
    np.testing.assert_array_equal(got.astype(np.float64), ref, err_msg=what)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def explicit_padding(padding, kernel, dilation):
    """(left, right, top, bottom) for int / pair / "valid" / "same" (torch's rule)."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        (kh, kw), (dh, dw) = kernel, dilation
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    ph, pw = pair(padding)
    return (pw, pw, ph, ph)


def torch_conv2d(x, w, b, stride, pads, dilation, groups, mode):
    # what torch.nn.Conv2d does for every padding_mode: pad, then an unpadded conv
    x = TF.pad(x, pads, mode=TORCH_MODE[mode])
    return TF.conv2d(x, w, b, stride=stride, padding=0, dilation=dilation, groups=groups)


def autograd(fn, inputs, grad_out):
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    out.backward(grad_out)
    return N(out), [N(t.grad) for t in leaves]


# ---------------------------------------------------------------- conv2d + conv2d_backward
def conv2d_case(d):
    c = {}
    c["dtype"] = d.pick(DTYPES)
    c["groups"] = groups = d.int(1, 3)
    c["C_in"] = groups * d.int(1, 3)
    c["C_out"] = groups * d.int(1, 3)
    c["kernel"] = (d.int(1, 4), d.int(1, 4))
    dil = (d.int(1, 3), d.int(1, 3))
    c["dilation"] = dil[0] if d.flag() else dil
    c["padding_mode"] = d.pick(["zeros", "reflect", "replicate", "circular"])
    kind = d.pick(["int", "pair", "same", "valid"])
    if kind == "int":
        c["padding"] = d.int(0, 3)
    elif kind == "pair":
        c["padding"] = (d.int(0, 3), d.int(0, 3))
    else:
        c["padding"] = kind
    if kind == "same":
        c["stride"] = d.pick([1, (1, 1)])
    else:
        s = (d.int(1, 3), d.int(1, 3))
        c["stride"] = s[0] if d.flag() else s
    c["N"] = d.int(1, 2)
    c["H"], c["W"] = d.int(1, 8), d.int(1, 8)
    c["bias"] = d.flag()
    c["needs_input_grad"] = d.pick([True, True, False])
    c["layout"] = d.pick(LAYOUTS)
    c["seed"] = d.int(0, 2**32 - 1)

    l, r, t, b = explicit_padding(c["padding"], c["kernel"], pair(c["dilation"]))
    H, W = c["H"], c["W"]
    (kh, kw), (dh, dw) = c["kernel"], pair(c["dilation"])
    d.require(H + t + b >= dh * (kh - 1) + 1 and W + l + r >= dw * (kw - 1) + 1)
    if c["padding_mode"] == "reflect":
        d.require(max(t, b) < H and max(l, r) < W)
    if c["padding_mode"] == "circular":
        d.require(max(t, b) <= H and max(l, r) <= W)
    c["pads"] = (l, r, t, b)
    return c


def run_conv2d_case(c):
    dtype, groups = c["dtype"], c["groups"]
    kh, kw = c["kernel"]
    x = data(c["seed"], (c["N"], c["C_in"], c["H"], c["W"]), dtype)
    w = data(c["seed"] + 1, (c["C_out"], c["C_in"] // groups, kh, kw), dtype)
    b = data(c["seed"] + 2, (c["C_out"],), dtype) if c["bias"] else None
    hp = dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"], groups=groups,
              padding_mode=c["padding_mode"])
    tconv = lambda x_, w_, b_: torch_conv2d(x_, w_, b_, pair(c["stride"]), c["pads"], pair(c["dilation"]),
                                            groups, c["padding_mode"])

    out = F.conv2d(relayout(x, c["layout"]), relayout(w, c["layout"]), b, **hp)
    tb = T(b) if b is not None else torch.zeros(c["C_out"], dtype=torch.float64)
    g = data(c["seed"] + 3, tuple(tconv(T(x), T(w), tb).shape), dtype)
    ref, (ref_gx, ref_gw, ref_gb) = autograd(tconv, [T(x), T(w), tb], T(g))
    absref, (abs_gx, abs_gw, abs_gb) = autograd(tconv, [T(x).abs(), T(w).abs(), tb.abs()], T(g).abs())
    N_, Ho, Wo = g.shape[0], g.shape[2], g.shape[3]
    cin_g, cout_g = c["C_in"] // groups, c["C_out"] // groups

    check(out, ref, absref, dtype, cin_g * kh * kw + 1, "conv2d")
    gx, gw, gb = F.conv2d_backward(relayout(g, c["layout"]), relayout(x, c["layout"]), relayout(w, c["layout"]),
                                   needs_input_grad=c["needs_input_grad"], **hp)
    if c["needs_input_grad"]:
        # a padded copy can feed one input pixel up to 4 times (reflect/circular corners)
        check(gx, ref_gx, abs_gx, dtype, 4 * cout_g * kh * kw, "conv2d_backward grad_input")
    else:
        assert gx is None
    check(gw, ref_gw, abs_gw, dtype, N_ * Ho * Wo, "conv2d_backward grad_weight")
    check(gb, ref_gb, abs_gb, dtype, N_ * Ho * Wo, "conv2d_backward grad_bias")
    if not isinstance(c["padding"], str):
        assert tuple(F.conv2d_output_shape((c["H"], c["W"]), c["kernel"], stride=c["stride"], padding=c["padding"],
                                           dilation=c["dilation"])) == (Ho, Wo)


@fixed(30)
@given(cases(conv2d_case))
def test_conv2d_and_backward(c):
    run_conv2d_case(c)


@pytest.mark.parametrize("seed", SWEEP)
def test_conv2d_and_backward_sweep(seed):
    run_conv2d_case(seeded(conv2d_case, seed))


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("kernel, dilation", [((2, 2), 1), ((4, 3), (1, 2)), ((2, 1), (3, 1)), ((1, 4), 2)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_same_even_kernels(mode, kernel, dilation, dtype):
    c = dict(dtype=dtype, groups=1, C_in=2, C_out=3, kernel=kernel, dilation=dilation, padding_mode=mode,
             padding="same", stride=1, N=2, H=6, W=7, bias=True, needs_input_grad=True, layout="C", seed=7)
    c["pads"] = explicit_padding("same", kernel, pair(dilation))
    run_conv2d_case(c)


def test_reference_same_padding_matches_torch_same():
    # the test's own "same" rule against torch's padding="same" (zeros mode)
    x, w = T(data(0, (1, 2, 7, 6), np.float64)), T(data(1, (3, 2, 4, 3), np.float64))
    ref = TF.conv2d(x, w, padding="same", dilation=(2, 1))
    mine = torch_conv2d(x, w, None, (1, 1), explicit_padding("same", (4, 3), (2, 1)), (2, 1), 1, "zeros")
    torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-12)
    conv = torch.nn.Conv2d(2, 3, (4, 3), padding="same", dilation=(2, 1), padding_mode="reflect")
    assert tuple(conv._reversed_padding_repeated_twice) == explicit_padding("same", (4, 3), (2, 1))


# ---------------------------------------------------------------- max_pool2d + backward
def torch_pool_out(L, k, s, p, d, ceil):
    # aten pooling_output_shape
    o = (L + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (o - 1) * s >= L + p:
        o -= 1
    return o


def pool_case(d, op):
    c = {}
    c["dtype"] = d.pick(DTYPES)
    k = (d.int(1, 4), d.int(1, 4))
    if d.flag():
        k = (k[0], k[0])
    c["kernel_size"] = k[0] if k[0] == k[1] and d.flag() else k
    s = None if d.flag() else (d.int(1, 4), d.int(1, 4))
    c["stride"] = s if s is None or d.flag() else s[0]
    p = (d.int(0, k[0] // 2), d.int(0, k[1] // 2))
    c["padding"] = p if d.flag() else min(p)
    dil = (1, 1)
    if op == "max":
        dil = (d.int(1, 3), d.int(1, 3))
        c["dilation"] = dil if d.flag() else dil[0]
        c["kind"] = d.pick(["normal", "normal", "ties"])
    else:
        c["count_include_pad"] = d.flag()
        c["divisor_override"] = None if d.flag() else d.int(1, 5)
    c["ceil_mode"] = d.flag()
    c["N"], c["C"] = d.int(1, 2), d.int(1, 3)
    c["H"], c["W"] = d.int(1, 9), d.int(1, 9)
    c["layout"] = d.pick(LAYOUTS)
    c["seed"] = d.int(0, 2**32 - 1)
    kk, pp, dd = pair(c["kernel_size"]), pair(c["padding"]), pair(c.get("dilation", 1))
    ss = pair(c["stride"] if c["stride"] is not None else c["kernel_size"])
    c["out_hw"] = tuple(torch_pool_out(L, kk[i], ss[i], pp[i], dd[i], c["ceil_mode"])
                        for i, L in enumerate((c["H"], c["W"])))
    d.require(min(c["out_hw"]) >= 1)
    return c


def max_pool_case(d):
    return pool_case(d, "max")


def avg_pool_case(d):
    return pool_case(d, "avg")


def run_max_pool_case(c, kind):
    dtype = c["dtype"]
    x = data(c["seed"], (c["N"], c["C"], c["H"], c["W"]), dtype, "ties" if kind == "ties" else "normal")
    if kind == "nan":
        rng = np.random.default_rng(c["seed"] + 5)
        x[rng.random(x.shape) < 0.2] = np.nan
    hp = dict(stride=c["stride"], padding=c["padding"], dilation=c.get("dilation", 1), ceil_mode=c["ceil_mode"])
    thp = dict(hp, stride=c["stride"] if c["stride"] is not None else c["kernel_size"])
    ref, ref_idx = TF.max_pool2d(T(x), c["kernel_size"], return_indices=True, **thp)
    if (N(ref_idx) >= c["H"] * c["W"]).any():
        # A dilated window that sees only padding: torch gives -inf and an index outside the
        # plane (and torch 2.13's backward then writes out of bounds); cnn refuses it.
        with pytest.raises(ValueError, match="wholly in the padding"):
            F.max_pool2d(x, c["kernel_size"], **hp)
        return

    out, idx = F.max_pool2d(relayout(x, c["layout"]), c["kernel_size"], return_indices=True, **hp)
    check_exact(out, N(ref), dtype, "max_pool2d values")
    np.testing.assert_array_equal(F.max_pool2d(x, c["kernel_size"], **hp), out)
    assert np.asarray(idx).dtype == np.int64
    np.testing.assert_array_equal(idx, N(ref_idx), err_msg="max_pool2d indices")
    assert tuple(F.pool2d_output_shape((c["H"], c["W"]), c["kernel_size"], **hp)) == tuple(ref.shape[2:])

    g = data(c["seed"] + 3, tuple(ref.shape), dtype)
    fn = lambda x_: TF.max_pool2d(x_, c["kernel_size"], **thp)
    _, (ref_gx,) = autograd(fn, [T(x)], T(g))
    # |grad_out| routed through the same indices
    _, (abs_gx,) = autograd(fn, [T(x)], T(g).abs())
    gx = F.max_pool2d_backward(relayout(g, c["layout"]), idx, x.shape)
    kh, kw = pair(c["kernel_size"])
    check(gx, ref_gx, abs_gx, dtype, kh * kw, "max_pool2d_backward")


@fixed(15)
@given(cases(max_pool_case))
def test_max_pool2d_and_backward(c):
    run_max_pool_case(c, c["kind"])


@pytest.mark.parametrize("seed", SWEEP)
def test_max_pool2d_and_backward_sweep(seed):
    c = seeded(max_pool_case, seed)
    run_max_pool_case(c, c["kind"])


@fixed(5)
@given(cases(max_pool_case))
def test_max_pool2d_nan_like_torch(c):
    run_max_pool_case(c, "nan")


def test_max_pool2d_window_only_in_padding():
    # rows -1 and +1 of a 1-row input (kernel 2, dilation 2, padding 1): nothing but padding
    x = data(0, (2, 3, 1, 5), np.float64)
    hp = dict(padding=(1, 2), dilation=(2, 1), ceil_mode=True)
    ref, ref_idx = TF.max_pool2d(T(x), (2, 4), return_indices=True, **hp)
    # torch: -inf with indices outside the plane, which its own backward writes through
    assert np.isneginf(N(ref)).any() and (N(ref_idx) >= 5).any()
    with pytest.raises(ValueError, match="wholly in the padding along the height"):
        F.max_pool2d(x, (2, 4), return_indices=True, **hp)
    with pytest.raises(ValueError, match="wholly in the padding"):
        F.pool2d_output_shape((1, 5), (2, 4), **hp)


# ---------------------------------------------------------------- avg_pool2d + backward
def run_avg_pool_case(c):
    dtype = c["dtype"]
    x = data(c["seed"], (c["N"], c["C"], c["H"], c["W"]), dtype)
    hp = dict(stride=c["stride"], padding=c["padding"], ceil_mode=c["ceil_mode"],
              count_include_pad=c["count_include_pad"], divisor_override=c["divisor_override"])
    thp = dict(hp, stride=c["stride"] if c["stride"] is not None else c["kernel_size"])
    fn = lambda x_: TF.avg_pool2d(x_, c["kernel_size"], **thp)
    kh, kw = pair(c["kernel_size"])

    out = F.avg_pool2d(relayout(x, c["layout"]), c["kernel_size"], **hp)
    ref = N(fn(T(x)))
    check(out, ref, N(fn(T(x).abs())), dtype, kh * kw, "avg_pool2d")

    g = data(c["seed"] + 3, ref.shape, dtype)
    _, (ref_gx,) = autograd(fn, [T(x)], T(g))
    _, (abs_gx,) = autograd(fn, [T(x)], T(g).abs())
    gx = F.avg_pool2d_backward(relayout(g, c["layout"]), x.shape, c["kernel_size"], **hp)
    check(gx, ref_gx, abs_gx, dtype, kh * kw, "avg_pool2d_backward")


@fixed(15)
@given(cases(avg_pool_case))
def test_avg_pool2d_and_backward(c):
    run_avg_pool_case(c)


@pytest.mark.parametrize("seed", SWEEP)
def test_avg_pool2d_and_backward_sweep(seed):
    run_avg_pool_case(seeded(avg_pool_case, seed))


# ---------------------------------------------------------------- conv_transpose2d + backward
def conv_transpose2d_case(d):
    c = {}
    c["dtype"] = d.pick(DTYPES)
    c["groups"] = groups = d.int(1, 3)
    c["C_in"] = groups * d.int(1, 3)
    c["C_out"] = groups * d.int(1, 3)
    c["kernel"] = (d.int(1, 4), d.int(1, 4))
    s = (d.int(1, 3), d.int(1, 3))
    dil = (d.int(1, 3), d.int(1, 3))
    p = (d.int(0, 3), d.int(0, 3))
    op = (d.int(0, max(s[0], dil[0]) - 1), d.int(0, max(s[1], dil[1]) - 1))
    squash = d.flag()  # ints instead of pairs where the pair is square
    c["stride"] = s[0] if squash and s[0] == s[1] else s
    c["dilation"] = dil[0] if squash and dil[0] == dil[1] else dil
    c["padding"] = p[0] if squash and p[0] == p[1] else p
    c["output_padding"] = op[0] if squash and op[0] == op[1] else op
    c["N"] = d.int(1, 2)
    c["H"], c["W"] = d.int(1, 6), d.int(1, 6)
    c["bias"] = d.flag()
    c["needs_input_grad"] = d.pick([True, True, False])
    c["layout"] = d.pick(LAYOUTS)
    c["seed"] = d.int(0, 2**32 - 1)
    c["out_hw"] = tuple((L - 1) * s[i] - 2 * p[i] + dil[i] * (c["kernel"][i] - 1) + op[i] + 1
                        for i, L in enumerate((c["H"], c["W"])))
    d.require(min(c["out_hw"]) >= 1)
    return c


def run_conv_transpose2d_case(c):
    dtype, groups = c["dtype"], c["groups"]
    kh, kw = c["kernel"]
    x = data(c["seed"], (c["N"], c["C_in"], c["H"], c["W"]), dtype)
    w = data(c["seed"] + 1, (c["C_in"], c["C_out"] // groups, kh, kw), dtype)
    b = data(c["seed"] + 2, (c["C_out"],), dtype) if c["bias"] else None
    hp = dict(stride=c["stride"], padding=c["padding"], output_padding=c["output_padding"], groups=groups,
              dilation=c["dilation"])
    fn = lambda x_, w_, b_: TF.conv_transpose2d(x_, w_, b_, **hp)
    tb = T(b) if b is not None else torch.zeros(c["C_out"], dtype=torch.float64)
    cin_g, cout_g = c["C_in"] // groups, c["C_out"] // groups

    out = F.conv_transpose2d(relayout(x, c["layout"]), relayout(w, c["layout"]), b, **hp)
    g = data(c["seed"] + 3, (c["N"], c["C_out"]) + c["out_hw"], dtype)
    ref, (ref_gx, ref_gw, ref_gb) = autograd(fn, [T(x), T(w), tb], T(g))
    absref, (abs_gx, abs_gw, abs_gb) = autograd(fn, [T(x).abs(), T(w).abs(), tb.abs()], T(g).abs())
    assert tuple(F.conv_transpose2d_output_shape((c["H"], c["W"]), c["kernel"], stride=c["stride"],
                                                 padding=c["padding"], output_padding=c["output_padding"],
                                                 dilation=c["dilation"])) == c["out_hw"] == tuple(ref.shape[2:])
    check(out, ref, absref, dtype, cin_g * kh * kw + 1, "conv_transpose2d")

    gx, gw, gb = F.conv_transpose2d_backward(relayout(g, c["layout"]), relayout(x, c["layout"]),
                                             relayout(w, c["layout"]), needs_input_grad=c["needs_input_grad"], **hp)
    if c["needs_input_grad"]:
        check(gx, ref_gx, abs_gx, dtype, cout_g * kh * kw, "conv_transpose2d_backward grad_input")
    else:
        assert gx is None
    check(gw, ref_gw, abs_gw, dtype, c["N"] * c["H"] * c["W"], "conv_transpose2d_backward grad_weight")
    check(gb, ref_gb, abs_gb, dtype, c["N"] * math.prod(c["out_hw"]), "conv_transpose2d_backward grad_bias")


@fixed(20)
@given(cases(conv_transpose2d_case))
def test_conv_transpose2d_and_backward(c):
    run_conv_transpose2d_case(c)


@pytest.mark.parametrize("seed", SWEEP)
def test_conv_transpose2d_and_backward_sweep(seed):
    run_conv_transpose2d_case(seeded(conv_transpose2d_case, seed))


# ---------------------------------------------------------------- pad2d + backward
def pad2d_case(d):
    c = dict(dtype=d.pick(DTYPES), mode=d.pick(["zeros", "reflect", "replicate", "circular"]),
             padding=tuple(d.int(0, 3) for _ in range(4)), H=d.int(1, 6), W=d.int(1, 6),
             layout=d.pick(LAYOUTS), seed=d.int(0, 2**32 - 1))
    l, r, t, b = c["padding"]
    if c["mode"] == "reflect":
        d.require(max(l, r) < c["W"] and max(t, b) < c["H"])
    if c["mode"] == "circular":
        d.require(max(l, r) <= c["W"] and max(t, b) <= c["H"])
    return c


def run_pad2d_case(c):
    dtype, mode, padding, layout = c["dtype"], c["mode"], c["padding"], c["layout"]
    x = data(c["seed"], (2, 3, c["H"], c["W"]), dtype)
    fn = lambda x_: TF.pad(x_, padding, mode=TORCH_MODE[mode])
    ref = N(fn(T(x)))
    check_exact(F.pad2d(relayout(x, layout), padding, mode=mode), ref, dtype, f"pad2d {mode}")

    g = data(c["seed"] + 3, ref.shape, dtype)
    _, (ref_gx,) = autograd(fn, [T(x)], T(g))
    _, (abs_gx,) = autograd(fn, [T(x)], T(g).abs())
    gx = F.pad2d_backward(relayout(g, layout), padding, mode=mode)
    check(gx, ref_gx, abs_gx, dtype, 9, f"pad2d_backward {mode}")


@fixed(15)
@given(cases(pad2d_case))
def test_pad2d_and_backward(c):
    run_pad2d_case(c)


@pytest.mark.parametrize("seed", range(20))
def test_pad2d_and_backward_sweep(seed):
    run_pad2d_case(seeded(pad2d_case, seed))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_and_backward_exactly(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 7, 5)).astype(dtype)
    x.flat[:6] = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-40]
    grad_out = rng.standard_normal(x.shape).astype(dtype)
    grad_out.flat[-3:] = [np.nan, np.inf, -np.inf]
    t = torch.from_numpy(x.copy()).requires_grad_()
    out_t = TF.relu(t)
    out_t.backward(torch.from_numpy(grad_out))
    out = F.relu(x)
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    np.testing.assert_array_equal(F.relu_backward(grad_out, out), t.grad.numpy())
