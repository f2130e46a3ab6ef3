"""Fuzz every cnn.functional op, forward and backward, for a number of minutes.

    python3 scripts/fuzz_ops.py --minutes 3 [--seed 0]
    python3 scripts/fuzz_ops.py --replay "<case>"

The fuzzer is tests/fuzzing.py, the one tests/test_fuzz.py runs on a fixed set of
examples: hypothesis draws shapes, strides, paddings, dilations, groups, modes,
dtypes and memory layouts, valid and invalid; valid cases must agree with the loop
reference (tests/reference.py), invalid ones raise ValueError or TypeError. It runs in
a child process that prints each case before running it: when the child crashes or
hangs, this process reports the case, and starts another child with the next seed
until the time is up.

The report: cases tried per op and verdict (a markdown table), the known bugs met
again (tests/fuzzing.py KNOWN_BUGS), and every new failure, crash or hang with a case
that ``--replay`` reproduces. Exit status 1 if there was any new one.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), ROOT]  # the fuzzer; cnn as built in place

import fuzzing  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="how long to fuzz")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed of the first child")
    parser.add_argument("--examples", type=int, default=100,
                        help="examples per hypothesis run (each run shrinks its failure)")
    parser.add_argument("--hang-seconds", type=float, default=120,
                        help="a child silent this long is killed and reported as hung")
    parser.add_argument("--replay", metavar="CASE", help="check one case (its repr) and exit")
    args = parser.parse_args()
    if args.replay:
        outcome = fuzzing.replay(args.replay)
        print(outcome)
        return 0 if outcome.startswith("ok") else 1

    tally = fuzzing.Tally()
    start = time.monotonic()
    deadline = start + 60 * args.minutes
    seed = args.seed
    while (left := deadline - time.monotonic()) > 1:
        # the child stops starting hypothesis runs at the deadline; its last run (and
        # the shrinking of a failure) may take a little longer
        fuzzing.run_child(fuzzing.child_command("--minutes", left / 60, "--seed", seed,
                                                "--examples", args.examples),
                          tally, timeout=left + 300, hang_seconds=args.hang_seconds)
        seed += 1  # after a crash, go on from another seed
    minutes = (time.monotonic() - start) / 60

    print(f"fuzzed cnn.functional for {minutes:.1f} min (seed {args.seed}, "
          f"{tally.children} child process{'es' if tally.children > 1 else ''}): "
          f"{tally.cases} cases, {len(tally.failures)} new failures, {len(tally.crashes)} "
          f"crashes or hangs, {sum(n for n, _ in tally.known.values())} known-bug cases"
          + (f" ({tally.shrink_runs} more runs shrinking failures)" if tally.shrink_runs else "")
          + "\n")
    print(tally.table())
    print("\nvalid: PyTorch computes it, cnn agrees with the loop reference; extension: "
          "PyTorch refuses,\ncnn computes it (and agrees); invalid: both refuse; refused: "
          "PyTorch computes it, cnn refuses\nby design (tests/fuzzing.py REFUSALS); too large: "
          "cannot be allocated, ValueError/MemoryError.")
    if tally.known:
        print("\nknown bugs met again (tests/fuzzing.py KNOWN_BUGS):")
        for name, (count, case) in sorted(tally.known.items()):
            print(f"  {name}: {count} cases; {fuzzing.KNOWN_BUGS[name]['what']}\n"
                  f"    first case: {case}")
    if not tally.ok:
        print("\nNEW PROBLEMS (reproduce with --replay \"<case>\"):")
        print(tally.problems())
    return 0 if tally.ok else 1


if __name__ == "__main__":
    sys.exit(main())
