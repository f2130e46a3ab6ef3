"""Benchmark cnn.functional against a pure-NumPy im2col baseline and PyTorch (CPU).

    python3 scripts/bench_ops.py [--threads 2] [--repeats N] [--rounds R] [--cases SUBSTR]
                                 [--markdown] [--quick]
                                 [--no-denormals | --denormals-only]

For every case: forward and forward+backward time (ms: median of repeats, then median
over rounds of the whole table), cnn's throughput (GFLOP/s for convolutions, counting
2 FLOPs per multiply-add; fwd+bwd counts
forward + grad_input + grad_weight = 3x forward, 2x when the input grad is skipped;
GB/s of float32 traffic for pooling), and cnn's time divided by NumPy's and torch's
(below 1 means cnn is faster). All float32, all libraries limited to the same
thread count. Each library is timed in its own block (all of its repeats in a row,
then a pause) because OpenBLAS/OpenMP workers keep spinning after a call and would
steal cores from a library timed right after. Before any timing, the outputs and
gradients of the three are checked to agree.

Then the denormal timings: every case, and the Linear layers (NumPy's matmul), with
denormal data and with denormal weights against normal numbers, and a CNNClassifier
fit on digits with denormal inputs and with denormal weights (``--denormals-only``
runs just these; ``--no-denormals`` skips them).
"""

import argparse
import copy
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

BATCH = 64
PAUSE = 0.2  # seconds between timing blocks, so spinning pool threads go to sleep
LIBS = ("cnn", "numpy", "torch")


@dataclass
class Case:
    name: str
    op: str  # conv2d | conv_transpose2d | max_pool2d | avg_pool2d
    x_shape: tuple
    weight_shape: tuple = None
    params: dict = field(default_factory=dict)
    needs_input_grad: bool = True
    in_summary: bool = True  # counted in the geometric means


def _cases():
    def conv(name, C_in, C_out, k, H, groups=1, **params):
        return Case(name, "conv2d", (BATCH, C_in, H, H), (C_out, C_in // groups, k, k),
                    dict(params, groups=groups))

    def conv_t(name, C_in, C_out, k, H, **params):
        return Case(name, "conv_transpose2d", (BATCH, C_in, H, H), (C_in, C_out, k, k), params)

    def pool(name, op, k, **params):
        return Case(name, op, (BATCH, 32, 28, 28), params=dict(params, kernel_size=k))

    cases = [
        conv("conv 1->16 k3 p1 8x8", 1, 16, 3, 8, padding=1),
        conv("conv 16->32 k3 p1 4x4", 16, 32, 3, 4, padding=1),
        conv("conv 1->32 k5 28x28", 1, 32, 5, 28),
        conv("conv 32->64 k5 12x12", 32, 64, 5, 12),
        conv("conv 64->64 k3 p1 14x14", 64, 64, 3, 14, padding=1),
        conv("conv 32->32 k3 s2 p1 28x28", 32, 32, 3, 28, stride=2, padding=1),
        conv("depthwise 32 k3 p1 28x28", 32, 32, 3, 28, groups=32, padding=1),
        pool("maxpool 2x2 32x28x28", "max_pool2d", 2),
        pool("avgpool 2x2 32x28x28", "avg_pool2d", 2),
        pool("maxpool 3x3 s2 p1 32x28x28", "max_pool2d", 3, stride=2, padding=1),
        conv_t("convT 16->8 k4 s2 p1 7x7", 16, 8, 4, 7, stride=2, padding=1),
        conv_t("convT 32->1 k2 s2 14x14", 32, 1, 2, 14, stride=2),
    ]
    # first layers never need the gradient of the image: time that path too
    for case in list(cases):
        if case.op == "conv2d" and case.x_shape[1] == 1:
            cases.append(Case(case.name + " no dx", case.op, case.x_shape, case.weight_shape,
                              case.params, needs_input_grad=False, in_summary=False))
    return cases


def _parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for every library (BLAS, OpenMP, torch); default 2")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per library and case in a round (median taken); "
                             "default 100, 5 with --quick")
    parser.add_argument("--rounds", type=int, default=None,
                        help="times the whole table is timed (median over the rounds "
                             "reported); default 3 (about 2.5 min in all), 1 with --quick")
    parser.add_argument("--cases", default=None,
                        help="only the cases whose name contains this substring")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--no-denormals", action="store_true",
                        help="skip timing cnn on denormal inputs")
    parser.add_argument("--denormals-only", action="store_true",
                        help="only the denormal timings (the ops, Linear and a CNNClassifier fit)")
    parser.add_argument("--quick", action="store_true",
                        help="few repeats and one warm-up call: a smoke test, not a measurement")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.repeats is None:
        args.repeats = 5 if args.quick else 100
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.repeats < 1 or args.rounds < 1:
        parser.error("--repeats and --rounds must be >= 1")
    if args.no_denormals and args.denormals_only:
        parser.error("--no-denormals and --denormals-only exclude each other")
    return args


# ------------------------------------------------------------------ counting work

def _out_hw(case):
    N, C, H, W = case.x_shape
    p = case.params
    if case.op == "conv_transpose2d":
        k = case.weight_shape[2]
        return tuple((n - 1) * p.get("stride", 1) - 2 * p.get("padding", 0) + k for n in (H, W))
    k = case.weight_shape[2] if case.weight_shape else p["kernel_size"]
    s = p.get("stride", 1 if case.weight_shape else k)
    return tuple((n + 2 * p.get("padding", 0) - k) // s + 1 for n in (H, W))


def _forward_flops(case):
    N, C_in, H, W = case.x_shape
    H_out, W_out = _out_hw(case)
    if case.op == "conv2d":
        C_out, C_in_g, kH, kW = case.weight_shape
        return 2 * N * C_out * H_out * W_out * C_in_g * kH * kW
    C_in, C_out_g, kH, kW = case.weight_shape  # conv_transpose2d: one MAC per input pixel
    return 2 * N * C_in * H * W * C_out_g * kH * kW


def _pool_bytes(case):
    """float32 bytes moved: forward reads x, writes y; backward reads dy, writes dx
    (the int64 indices of max pooling are not counted)."""
    N, C, H, W = case.x_shape
    H_out, W_out = _out_hw(case)
    forward = 4 * N * C * (H * W + H_out * W_out)
    return forward, 2 * forward


def _rates(case, t_fwd, t_both):
    """cnn's throughput cells: (forward, forward+backward)."""
    if case.op in ("max_pool2d", "avg_pool2d"):
        fwd, both = _pool_bytes(case)
        return f"{fwd / t_fwd / 1e9:.1f} GB/s", f"{both / t_both / 1e9:.1f} GB/s"
    fwd = _forward_flops(case)
    both = fwd * (3 if case.needs_input_grad else 2)
    return f"{fwd / t_fwd / 1e9:.1f} GF/s", f"{both / t_both / 1e9:.1f} GF/s"


# --------------------------------------------------------------- library runners
# each returns (forward, forward_backward): closures producing the arrays to check

def _functional_runner(F, case, x, weight, bias, grad_out):
    """cnn.functional and the NumPy baseline share one signature."""
    p = case.params
    if case.op == "conv2d":
        def forward():
            return F.conv2d(x, weight, bias, **p)

        def forward_backward():
            y = F.conv2d(x, weight, bias, **p)
            return (y,) + tuple(F.conv2d_backward(grad_out, x, weight, **p,
                                                  needs_input_grad=case.needs_input_grad))
    elif case.op == "conv_transpose2d":
        def forward():
            return F.conv_transpose2d(x, weight, bias, **p)

        def forward_backward():
            y = F.conv_transpose2d(x, weight, bias, **p)
            return (y,) + tuple(F.conv_transpose2d_backward(
                grad_out, x, weight, **p, needs_input_grad=case.needs_input_grad))
    elif case.op == "max_pool2d":
        def forward():
            return F.max_pool2d(x, **p)

        def forward_backward():
            y, indices = F.max_pool2d(x, **p, return_indices=True)
            return y, F.max_pool2d_backward(grad_out, indices, x.shape)
    else:
        def forward():
            return F.avg_pool2d(x, **p)

        def forward_backward():
            y = F.avg_pool2d(x, **p)
            return y, F.avg_pool2d_backward(grad_out, x.shape, **p)
    return forward, forward_backward


def _torch_runner(torch, case, x, weight, bias, grad_out):
    import torch.nn.functional as TF

    p = case.params
    x_t = torch.from_numpy(x)
    g_t = torch.from_numpy(grad_out)
    params = [torch.from_numpy(a).requires_grad_() for a in (weight, bias) if a is not None]
    x_grad = x_t.clone().requires_grad_(case.needs_input_grad)
    op = getattr(TF, case.op)

    def call(inp, *w):
        return op(inp, *w, **p)

    def forward():
        with torch.no_grad():
            return call(x_t, *params).numpy()

    def forward_backward():
        for t in [x_grad] + params:
            t.grad = None
        y = call(x_grad, *params)
        y.backward(g_t)
        grads = [x_grad.grad.numpy() if case.needs_input_grad else None]
        grads += [t.grad.numpy() for t in params]
        return (y.detach().numpy(),) + tuple(grads)

    return forward, forward_backward


# ------------------------------------------------------------------------ checks

def _check(case, results):
    """Compare every library's (y, grads...) with the first one's; return problems."""
    import numpy as np

    names = ("y", "grad_input", "grad_weight", "grad_bias")
    (ref_lib, ref), *others = results.items()
    problems = []
    for lib, got in others:
        for name, a, b in zip(names, got, ref):
            if (a is None) != (b is None):
                problems.append(f"{case.name}: {lib} {name} is {a!r:.20}, {ref_lib} {b!r:.20}")
                continue
            if a is None:
                continue
            # float32 sums over up to N*H*W terms: tolerance relative to the magnitude
            scale = max(float(np.abs(b).max()), 1e-6)
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-3, atol=2e-4 * scale):
                err = np.abs(a - b).max() if a.shape == b.shape else f"shape {a.shape} vs {b.shape}"
                problems.append(f"{case.name}: {lib} {name} differs from {ref_lib} "
                                f"(max abs err {err}, scale {scale:.3g})")
    return problems


# ------------------------------------------------------------------------ timing

def _median_time(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _fmt_ms(t):
    return "-" if t is None else f"{t * 1e3:.3f}" if t < 0.01 else f"{t * 1e3:.2f}"


def _fmt_ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}"


def _geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _print_table(header, rows, markdown):
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i])
                     for i, h in enumerate(header))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                        for i, c in enumerate(row)))


def _prepare(cases, baseline, np):
    """Random float32 inputs per case, and one grad_out shared by all libraries."""
    rng = np.random.default_rng(0)
    prepared = []
    for case in cases:
        x = rng.standard_normal(case.x_shape, dtype=np.float32)
        weight = bias = None
        if case.weight_shape is not None:
            fan_in = math.prod(case.weight_shape[1:])
            weight = rng.standard_normal(case.weight_shape, dtype=np.float32) / math.sqrt(fan_in)
            C_out = (case.weight_shape[0] if case.op == "conv2d"
                     else case.weight_shape[1] * case.params.get("groups", 1))
            bias = rng.standard_normal(C_out, dtype=np.float32)
        y = _functional_runner(baseline, case, x, weight, bias, None)[0]()
        grad_out = rng.standard_normal(y.shape, dtype=np.float32)
        prepared.append((case, x, weight, bias, grad_out))
    return prepared


def _verify(fns, np):
    """Run every library once per case; return the disagreements found."""
    problems = []
    for case, by_lib in fns:
        outputs = {}
        for lib, (forward, forward_backward) in by_lib.items():
            try:
                outputs[lib] = forward_backward()
                y_fwd = np.asarray(forward())
            except Exception as exc:  # report every failing case, not just the first
                problems.append(f"{case.name}: {lib} raised {type(exc).__name__}: {exc}")
                continue
            if y_fwd.shape != outputs[lib][0].shape or not np.allclose(y_fwd, outputs[lib][0]):
                problems.append(f"{case.name}: {lib} forward-only differs from its fwd+bwd y")
        problems += _check(case, outputs)
    return problems


def _time_all(fns, repeats, warmup, rounds):
    """{(case name, lib): (forward s, forward+backward s)}, one library block at a time.

    The whole table is timed ``rounds`` times over, and each time reported is
    the median over the rounds of its block's median. The benchmark machine (a
    VM on 2 cores) has slow spells lasting seconds, in which a block ran up to
    twice as slow, whatever the library: one round let a spell decide a ratio,
    and single runs of the table differed by 10% in geometric mean. Rounds a
    whole table apart put each library's blocks in different spells, and the
    median drops one slow round of three.
    """
    per_round = []
    for _ in range(rounds):
        times = {}
        for case, by_lib in fns:
            for lib, (forward, forward_backward) in by_lib.items():
                # before each block, the first too: _verify's calls of every library
                # left threads spinning, which made the first case's cnn forward 7x slower
                time.sleep(PAUSE)
                times[case.name, lib] = (_median_time(forward, repeats, warmup),
                                         _median_time(forward_backward, repeats, warmup))
        per_round.append(times)
    return {key: tuple(statistics.median(t[key][i] for t in per_round) for i in range(2))
            for key in per_round[0]}


def _report(cases, times, markdown, subset):
    def t(name, lib, which):
        return times[name, lib][which] if (name, lib) in times else None

    header = ["case", "cnn fwd ms", "cnn f+b ms", "cnn fwd rate", "cnn f+b rate",
              "np fwd ms", "np f+b ms", "torch fwd ms", "torch f+b ms",
              "cnn/np fwd", "cnn/np f+b", "cnn/torch fwd", "cnn/torch f+b"]
    rows = []
    for case in cases:
        n = case.name
        rates = _rates(case, *times[n, "cnn"]) if (n, "cnn") in times else ("-", "-")
        rows.append([n, _fmt_ms(t(n, "cnn", 0)), _fmt_ms(t(n, "cnn", 1)), *rates,
                     _fmt_ms(t(n, "numpy", 0)), _fmt_ms(t(n, "numpy", 1)),
                     _fmt_ms(t(n, "torch", 0)), _fmt_ms(t(n, "torch", 1)),
                     _fmt_ratio(t(n, "cnn", 0), t(n, "numpy", 0)),
                     _fmt_ratio(t(n, "cnn", 1), t(n, "numpy", 1)),
                     _fmt_ratio(t(n, "cnn", 0), t(n, "torch", 0)),
                     _fmt_ratio(t(n, "cnn", 1), t(n, "torch", 1))])
    print()
    _print_table(header, rows, markdown)
    print()

    libs = {lib for _, lib in times}
    if "cnn" not in libs:
        print("bars: n/a (cnn not importable)")
        return
    # the "no dx" rows repeat a case: shown and held to the per-case bar, not averaged
    summary = [c.name for c in cases if c.in_summary] or [c.name for c in cases]

    def f_b_ratios(other):
        return [t(n, "cnn", 1) / t(n, other, 1) for n in summary]

    gm_np = _geomean(f_b_ratios("numpy"))
    print(f"geomean cnn/numpy f+b over {len(summary)} cases: {gm_np:.3f} "
          f"(cnn {1 / gm_np:.1f}x faster)")
    bars = [("geomean cnn/numpy f+b <= 0.25 (>= 4x faster than numpy)", gm_np <= 0.25)]
    if "torch" in libs:
        gm_torch = _geomean(f_b_ratios("torch"))
        print(f"geomean cnn/torch f+b over {len(summary)} cases: {gm_torch:.3f}")
        worst, worst_name = max((t(c.name, "cnn", 1) / t(c.name, "torch", 1), c.name)
                                for c in cases)
        bars = [(f"every case cnn/torch f+b <= 1.5 (worst {worst:.2f}: {worst_name})",
                 worst <= 1.5),
                ("geomean cnn/torch f+b <= 0.75", gm_torch <= 0.75)] + bars
    else:
        print("torch not installed: the torch bars are not checked")
    if subset:
        print("(a subset of the cases: the bars hold for this subset only)")
    for text, ok in bars:
        print(f"{'PASS' if ok else 'MISS'}  {text}")


# ---------------------------------------------------------------------- denormals
# Denormal (subnormal) numbers make x86 arithmetic many times slower unless the
# FPU flushes them to zero. cnn's kernels set flush-to-zero/denormals-are-zero on
# their threads while they run; Linear is NumPy's matmul (OpenBLAS), which does
# not, so it is measured too. Each variant is timed in its own block.

DENORMAL_SCALE = 1e-39  # N(0, 1) draws times this sit below float32's smallest normal, 1.18e-38
DENORMAL_BAR = 2.0      # the bar: denormals slow nothing by more than 2x


def _denormal_fraction(np, *arrays):
    """The share of the nonzero values of arrays that are denormal (float32)."""
    values = np.concatenate([np.ravel(a) for a in arrays if a is not None])
    nonzero = values[values != 0]
    tiny = np.finfo(np.float32).smallest_normal
    return float(np.mean(np.abs(nonzero) < tiny)) if nonzero.size else 0.0


def _linear_cases(np):
    """(name, cnn.Linear, x, grad_out) for the dense layers of the default networks."""
    import cnn

    rng = np.random.default_rng(1)
    cases = []
    for n_in, n_out in ((64 * 2 * 2, 128), (64 * 7 * 7, 128), (128, 10)):
        layer = cnn.Linear(n_in, n_out, rng=rng)
        x = rng.standard_normal((BATCH, n_in), dtype=np.float32)
        grad_out = rng.standard_normal((BATCH, n_out), dtype=np.float32)
        cases.append((f"Linear {n_in}->{n_out} (numpy)", layer, x, grad_out))
    return cases


def _linear_runner(layer, x, grad_out):
    def forward():
        return layer.forward(x)

    def forward_backward():
        layer.zero_grad()
        return layer.forward(x), layer.backward(grad_out)

    return forward, forward_backward


def _time_variants(variants, repeats, warmup, rounds=3):
    """{variant: (forward ratio, forward+backward ratio, normal forward s, normal f+b s)}.

    Each variant is timed in its own block (``repeats`` calls in a row, then a
    pause); the blocks go round ``rounds`` times, and a variant's ratio is the
    median over the rounds of its time over the "normal" block of the same round,
    so that a change in the machine's load between rounds cancels out.
    """
    per_round = []
    for _ in range(rounds):
        times = {}
        for name, (forward, forward_backward) in variants.items():
            times[name] = (_median_time(forward, repeats, warmup),
                           _median_time(forward_backward, repeats, warmup))
            time.sleep(PAUSE)
        per_round.append(times)
    result = {}
    for name in variants:
        ratios = [(t[name][0] / t["normal"][0], t[name][1] / t["normal"][1]) for t in per_round]
        result[name] = (statistics.median(r[0] for r in ratios),
                        statistics.median(r[1] for r in ratios),
                        statistics.median(t["normal"][0] for t in per_round),
                        statistics.median(t["normal"][1] for t in per_round))
    return result


def _denormal_check(prepared, F, np, repeats, warmup):
    """cnn's ops and Linear on denormal data and on denormal weights, against normal numbers.

    "data": x and grad_out scaled into the denormal range; "weights": weight
    and bias scaled so. Returns {row name: worst ratio}.
    """
    tiny = np.float32(DENORMAL_SCALE)
    print(f"\ndenormals: time with values scaled by {DENORMAL_SCALE:g} (denormal) relative to "
          f"normal values; data = x and grad_out, weights = weight and bias; each variant "
          f"timed in its own block of {repeats} calls (median), the blocks taken round 3 "
          f"times, the median ratio shown")
    rows, worst = [], {}
    for case, x, weight, bias, grad_out in prepared:
        variants = {"normal": _functional_runner(F, case, x, weight, bias, grad_out),
                    "data": _functional_runner(F, case, x * tiny, weight, bias, grad_out * tiny)}
        if weight is not None:
            variants["weights"] = _functional_runner(
                F, case, x, weight * tiny, None if bias is None else bias * tiny, grad_out)
        rows.append((case.name, _time_variants(variants, repeats, warmup)))
    for name, layer, x, grad_out in _linear_cases(np):
        # one layer per variant: the weights are part of what is timed
        scaled = copy.deepcopy(layer)
        scaled.weight.data *= tiny
        scaled.bias.data *= tiny
        variants = {"normal": _linear_runner(layer, x, grad_out),
                    "data": _linear_runner(layer, x * tiny, grad_out * tiny),
                    "weights": _linear_runner(scaled, x, grad_out)}
        rows.append((name, _time_variants(variants, repeats, warmup)))

    header = ["case", "normal fwd ms", "normal f+b ms", "data fwd", "data f+b",
              "weights fwd", "weights f+b"]
    table = []
    for name, ratios in rows:
        normal = ratios["normal"]
        cells = [name, _fmt_ms(normal[2]), _fmt_ms(normal[3])]
        for variant in ("data", "weights"):
            cells += ([f"{r:.2f}x" for r in ratios[variant][:2]] if variant in ratios
                      else ["-", "-"])
        worst[name] = max(max(ratios[v][:2]) for v in ratios if v != "normal")
        table.append(cells)
    _print_table(header, table, markdown=False)
    kernels = {n: r for n, r in worst.items() if not n.startswith("Linear")}
    linear = {n: r for n, r in worst.items() if n.startswith("Linear")}
    for label, group in (("cnn kernels", kernels), ("Linear (numpy/OpenBLAS)", linear)):
        name, ratio = max(group.items(), key=lambda item: item[1])
        print(f"{'PASS' if ratio <= DENORMAL_BAR else 'MISS'}  denormals slow no "
              f"{label} case by more than {DENORMAL_BAR:g}x (worst {ratio:.2f}x: {name})")
    return worst


def _denormal_fit_check(np, repeats, epochs):
    """CNNClassifier's default network trained on digits with denormal inputs or weights.

    Every variant warm-starts from one network fitted for an epoch, with SGD at a
    learning rate of 1e-45 (itself denormal in float32) so that denormal weights
    stay denormal for the whole timed fit instead of being stepped out of the range.
    "data": the estimator's normalisation is set to the identity and the pixels
    (0..16) are scaled by 1e-40, so the network's float32 input is denormal.
    """
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning

    from cnn import CNNClassifier

    X, y = load_digits(return_X_y=True)
    base = CNNClassifier(max_iter=1, random_state=0).fit(X, y)
    base.set_params(warm_start=True, max_iter=epochs, solver="sgd", learning_rate_init=1e-45,
                    learning_rate="constant")

    def variant(name):
        clf = copy.deepcopy(base)
        X_fit = X
        if name == "weights":
            for p in clf.model_.parameters():
                p.data *= np.float32(DENORMAL_SCALE)
            share = _denormal_fraction(np, *(p.data for p in clf.model_.parameters()))
        elif name == "data":
            clf.input_mean_ = np.zeros_like(clf.input_mean_)
            clf.input_std_ = np.ones_like(clf.input_std_)
            X_fit = X * 1e-40
            share = _denormal_fraction(np, X_fit.astype(np.float32))
        else:
            share = _denormal_fraction(np, X.astype(np.float32))
        return clf, X_fit, share

    print(f"\ndenormals in training: CNNClassifier() on digits ({len(X)} samples), {epochs} "
          f"warm-started epochs of SGD at lr 1e-45; the three variants fitted in turn, "
          f"{repeats} rounds, the median ratio shown")
    names = ("normal", "data", "weights")
    rounds, shares = [], {}
    for _ in range(repeats):
        times = {}
        for name in names:
            clf, X_fit, shares[name] = variant(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                start = time.perf_counter()
                clf.fit(X_fit, y)
                times[name] = time.perf_counter() - start
            time.sleep(PAUSE)
        rounds.append(times)
    ratios = {}
    for name in names:
        ratios[name] = statistics.median(t[name] / t["normal"] for t in rounds)
        seconds = statistics.median(t[name] for t in rounds)
        print(f"  {name:8s} {seconds:6.2f} s  {ratios[name]:5.2f}x  "
              f"({100 * shares[name]:.0f} % of the nonzero "
              f"{'weights' if name == 'weights' else 'network inputs'} denormal)")
    worst = max(ratios["data"], ratios["weights"])
    print(f"{'PASS' if worst <= DENORMAL_BAR else 'MISS'}  denormals slow training by no more "
          f"than {DENORMAL_BAR:g}x (worst {worst:.2f}x)")
    return worst


def main():
    args = _parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy/torch/cnn start their pools

    import numpy as np
    from threadpoolctl import threadpool_limits

    scripts_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [scripts_dir, os.path.dirname(scripts_dir)]  # the baseline; cnn built in place
    import _numpy_im2col

    runners = {"numpy": lambda *a: _functional_runner(_numpy_im2col, *a)}
    try:
        import cnn.functional as cnn_functional
        runners["cnn"] = lambda *a: _functional_runner(cnn_functional, *a)
    except ImportError as exc:
        print(f"cnn not importable ({exc}): timing numpy and torch only")
    try:
        import torch
        torch.set_num_threads(args.threads)
        runners["torch"] = lambda *a: _torch_runner(torch, *a)
    except ImportError:
        torch = None
        print("torch not installed: no torch columns")
    libs = [lib for lib in LIBS if lib in runners]

    cases = [c for c in _cases() if args.cases is None or args.cases in c.name]
    if not cases:
        sys.exit(f"no case name contains {args.cases!r}")
    warmup = 1 if args.quick else 3

    started = time.perf_counter()
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f} on {os.cpu_count()} cores before starting: "
              "other processes compete for the CPU, timings may be noisy")
    prepared = _prepare(cases, _numpy_im2col, np)
    if args.denormals_only:
        if "cnn" not in runners:
            sys.exit("cnn is not importable: no denormal timings")
        print(f"threads={args.threads} warm-up={warmup} batch={BATCH} float32  "
              f"numpy {np.__version__}")
    else:
        fns = [(item[0], {lib: runners[lib](*item) for lib in libs}) for item in prepared]
        with threadpool_limits(limits=args.threads):
            problems = _verify(fns, np)
            if problems:
                print("outputs disagree, not timing:\n  " + "\n  ".join(problems))
                sys.exit(1)
            print(f"checked: {', '.join(libs)} agree on every case (outputs and gradients)")
            print(f"threads={args.threads} repeats={args.repeats} rounds={args.rounds} "
                  f"warm-up={warmup} batch={BATCH} float32  numpy {np.__version__}"
                  + (f"  torch {torch.__version__}" if torch else ""))
            times = _time_all(fns, args.repeats, warmup, args.rounds)
        _report(cases, times, args.markdown, subset=args.cases is not None)
    if "cnn" in runners and not args.no_denormals:
        with threadpool_limits(limits=args.threads):
            _denormal_check(prepared, cnn_functional, np, max(5, args.repeats // 2), warmup)
        _denormal_fit_check(np, repeats=1 if args.quick else 3, epochs=1 if args.quick else 3)
    print(f"\nbench time {time.perf_counter() - started:.0f} s, "
          f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
