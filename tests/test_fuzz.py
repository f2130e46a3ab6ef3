"""Every cnn.functional op, forward and backward, fuzzed (tests/fuzzing.py).

1. 60 hypothesis examples of each op (derandomized: CI sees the same ones every run)
   run in a child interpreter, so that a segfault or a hang fails this test, naming
   the case that caused it, instead of killing the session. Valid cases must agree with
   tests/reference.py, invalid ones raise ValueError/TypeError as the oracle says.
2. The checker catches what it exists to catch: wrong answers, inputs written to, an
   invalid case accepted, a valid one refused, a stray exception type; the watchdog
   names the last case of a child that crashed or hung.
3. With torch installed, the oracle's claims about PyTorch (what it computes and what
   it refuses) are PyTorch's.
4. Each known bug (fuzzing.KNOWN_BUGS) is a strict xfail: fixing it turns the xfail
   into a failure that says to remove the entry.

``python3 scripts/fuzz_ops.py --minutes M`` runs the same fuzzer for longer.
"""

import sys
import warnings

import numpy as np
import pytest
from hypothesis import given

import cnn.functional as F
import fuzzing
from cnn import _ops
from test_functional import hypothesis_settings

EXAMPLES = 60  # of each op


def test_fuzzed_ops_in_a_child_process():
    tally = fuzzing.Tally()
    code = fuzzing.run_child(fuzzing.child_command("--examples", EXAMPLES), tally, timeout=600)
    assert tally.ok and code == 0, f"exit code {code} (negative: killed by that signal)\n" \
                                   f"{tally.problems()}"
    assert tally.cases == EXAMPLES * len(fuzzing.OPS)
    for op in fuzzing.OPS:  # the generator reaches both sides of every op
        counts = tally.by_op[op]
        assert counts["valid"] > 0 and counts["invalid"] > 0, (op, dict(counts))


# ------------------------------------------------------------ the checker catches things

VALID = fuzzing.simple_case("conv2d", x=(2, 2, 5, 5), weight=(3, 2, 3, 3), bias=(3,), padding=1)
INVALID = dict(VALID, kwargs={"padding": -1})


def test_the_cases_used_below_pass():
    assert fuzzing.check(VALID).kind == "valid"
    assert fuzzing.check(INVALID).kind == "invalid"


def off_by_a_little(x, *args, **kw):
    return CONV2D(x, *args, **kw) * (1 + 1e-6)


def writes_to_its_input(x, *args, **kw):
    out = CONV2D(x, *args, **kw)
    np.asarray(x)[0, 0, 0, 0] += 1
    return out


def accepts_anything(x, weight, *args, **kw):
    return np.zeros((2, 3, 5, 5))


def raises(exc):
    def fn(*args, **kw):
        raise exc("sabotaged")
    return fn


CONV2D = F.conv2d
SABOTAGE = {  # a broken conv2d, the case that shows it, what the checker must say
    "wrong answer": (off_by_a_little, VALID, "Not equal to tolerance"),
    "writes to its input": (writes_to_its_input, VALID, "Arrays are not equal"),
    "accepts an invalid case": (accepts_anything, INVALID, r"returned \[\(2, 3, 5, 5\)\]"),
    "refuses a valid case": (raises(ValueError), VALID, "valid case refused with ValueError"),
    "another exception": (raises(IndexError), INVALID, "raised IndexError"),
}


@pytest.mark.parametrize("broken, case, message", SABOTAGE.values(), ids=SABOTAGE.keys())
def test_the_checker_catches_a_broken_op(monkeypatch, broken, case, message):
    monkeypatch.setattr(F, "conv2d", broken)
    with pytest.raises(fuzzing.Failure, match=message) as failure:
        fuzzing.check(case)
    assert failure.value.known is None


def test_the_watchdog_names_the_case_a_child_died_on():
    tally = fuzzing.Tally()
    code = fuzzing.run_child(
        [sys.executable, "-c", "import os, signal; print('case {1: 2}', flush=True); "
                               "print('done conv2d valid', flush=True); "
                               "os.kill(os.getpid(), signal.SIGSEGV)"],
        tally, timeout=60)
    assert code == -11
    assert tally.cases == 1 and tally.by_op["conv2d"]["valid"] == 1
    [(what, case, _)] = tally.crashes
    assert what == "child killed by signal 11" and case == "{1: 2}"
    assert "CRASH: child killed by signal 11" in tally.problems()


def test_the_watchdog_kills_a_child_that_hangs():
    tally = fuzzing.Tally()
    fuzzing.run_child([sys.executable, "-c", "import time; print('case {3: 4}', flush=True); "
                                             "time.sleep(60)"], tally, timeout=60, hang_seconds=1)
    [(what, case, _)] = tally.crashes
    assert what == "child hung, killed" and case == "{3: 4}"


# ------------------------------------------------------------ the oracle speaks for PyTorch

@hypothesis_settings(300)
@given(case=fuzzing.cases())
def test_the_oracle_agrees_with_torch(case):
    """Cases the oracle calls valid or refused, PyTorch computes; invalid and extension
    cases it refuses (max_pool2d_backward, float16 and complex arrays, results too large
    to allocate and PyTorch's own quirks are left out: see fuzzing.torch_accepts)."""
    pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # padding="same" with an even kernel warns
        accepted = fuzzing.torch_accepts(case)
    if accepted is None:
        return
    args, kwargs = fuzzing.build(case)
    verdict = fuzzing.judge(case["op"], args, kwargs)
    assert accepted == (verdict.kind in ("valid", "refused")), (verdict, case)


# ------------------------------------------------------------ bugs the fuzzer found

# Fixed, and kept fixed: each case once failed (see the commit that emptied KNOWN_BUGS).
FIXED = {
    "max_pool2d_backward checks indices into an empty plane": fuzzing.simple_case(
        "max_pool2d_backward", grad_out=(1, 1, 1, 1), indices=dict(
            shape=(1, 1, 1, 1), dtype="int64", layout="C", fill="indices", low=0, high=0),
        input_shape=(1, 1, 0, 1)),
    "conv_transpose2d of an empty image is the bias": fuzzing.simple_case(
        "conv_transpose2d", x=(1, 1, 0, 1), weight=(1, 1, 2, 1), bias=(1,)),
    "conv2d of an empty zero-padded image is the bias": fuzzing.simple_case(
        "conv2d", x=(1, 1, 0, 1), weight=(1, 1, 1, 1), bias=(1,), padding=1),
    "conv2d_backward of an empty zero-padded image": fuzzing.simple_case(
        "conv2d_backward", grad_out=(1, 1, 2, 3), x=(1, 1, 0, 1), weight=(1, 1, 1, 1),
        padding=1),
    "pad2d_backward never returns a view": fuzzing.simple_case(
        "pad2d_backward", grad_out=(2, 3, 4, 5), padding=(0, 0, 0, 0), mode="zeros"),
    "an int beyond int64 is a ValueError": fuzzing.simple_case(
        "conv2d", x=(1, 1, 1, 1), weight=(1, 1, 1, 1), bias=None, stride=2**63),
    "a one-tap window ignores a huge dilation": fuzzing.simple_case(
        "max_pool2d", x=(1, 1, 3, 3), kernel_size=1, dilation=2**62),
}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_bug(name):
    fuzzing.check(FIXED[name])


@pytest.mark.parametrize("name", sorted(fuzzing.KNOWN_BUGS))
@pytest.mark.xfail(strict=True, raises=fuzzing.Failure,
                   reason="a known bug of cnn (tests/fuzzing.py KNOWN_BUGS): once this "
                          "passes, remove its entry")
def test_known_bug(name):
    bug = fuzzing.KNOWN_BUGS[name]
    if bug.get("bounds_checked_only") and not _ops.BOUNDS_CHECKED:
        pytest.skip("shows in a bounds-checked build only (CNN_CYTHON_DEBUG=1)")
    try:
        fuzzing.check(bug["case"])
    except fuzzing.Failure as failure:
        assert failure.known == name, failure  # an AssertionError, not a Failure: fails
        raise
