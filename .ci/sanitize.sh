#!/usr/bin/env bash
# Rebuild mnistc._C with AddressSanitizer + UndefinedBehaviorSanitizer and run the tests that
# exercise the C core under it. Leak detection is off: CPython's own allocations trip it.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
MNISTC_SANITIZE=1 python setup.py -q build_ext --inplace --force >/dev/null
PYTHONMALLOC=malloc \
ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
  python -m pytest -q -p no:cacheprovider -m "not slow and not torch" "$@" || status=$?
python setup.py -q build_ext --inplace --force >/dev/null
exit $status
