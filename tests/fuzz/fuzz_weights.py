"""atheris target for the weights and model loaders (mnistc/saving.py), through the public API.

    pip install atheris
    python tests/fuzz/fuzz_weights.py -max_total_time=180 -print_final_stats=1 \
        -artifact_prefix=build/crash-weights- build/corpus_weights tests/fuzz/corpus_weights

Each input is written as a .weights.npz and a .keras file and loaded into a fixed model; the oracle
is tests/fuzz/weights_check.py (allowed: ValueError, FormatError included; weights unchanged after a
failure; finite weights after a success; no planted pickle ever executes). An exception of any other
class is a finding and stops the run with the input saved as an artifact.
MNISTC_FUZZ_TOLERATE_KNOWN=1 tolerates the classes of the findings already reported (to measure
executions and coverage past them); the outcome counts are printed to stderr as the run goes.
"""
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports(include=["mnistc", "zipfile", "json", "numpy.lib"]):
    import weights_check

TARGET = weights_check.WeightsTarget(
    tolerate_known=os.environ.get("MNISTC_FUZZ_TOLERATE_KNOWN") == "1")
_runs = [0]


def test_one_input(data):
    TARGET.check(bytes(data))
    _runs[0] += 1
    if _runs[0] & (_runs[0] - 1) == 0 and _runs[0] >= 1024:
        print(f"#{_runs[0]} outcomes {sorted(TARGET.counts.items())}", file=sys.stderr, flush=True)


def main():
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
