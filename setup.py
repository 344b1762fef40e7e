"""Builds the single extension mnistc._C from csrc/*.c (C11, NumPy C API, zlib).

Environment switches:
  MNISTC_SANITIZE=1  build with AddressSanitizer + UndefinedBehaviorSanitizer and debug info
  MNISTC_WERROR=1    turn warnings into errors (CI sets it)
"""
import glob
import os

import numpy
from setuptools import Extension, setup

# -ftree-vectorize: the elementwise loops (Adam, activations, gather) are written to vectorise;
# -fno-math-errno: lets sqrtf/expf inline without an errno check; -fno-trapping-math: float
# compares and selects may be if-converted (the branch-free exp's clamps), as nothing here reads
# the floating-point exception flags. None of them reorders reductions, changes a result or breaks
# NaN/Inf handling (unlike -ffast-math, which is never used).
extra_compile = ["-std=c11", "-O2", "-ftree-vectorize", "-fno-math-errno", "-fno-trapping-math", "-Wall",
                 "-Wextra", "-Wshadow", "-Wstrict-prototypes", "-fno-strict-aliasing", "-pthread"]
extra_link = ["-pthread"]
if os.environ.get("MNISTC_WERROR") == "1":
    extra_compile.append("-Werror")
if os.environ.get("MNISTC_SANITIZE") == "1":
    san = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
           "-fno-sanitize-recover=undefined"]
    extra_compile += san
    extra_link += ["-fsanitize=address,undefined"]
else:
    # No debug info (Python's CFLAGS carry -g): it was four fifths of the built extension. The
    # symbol table stays, for profilers' and debuggers' function names.
    extra_compile.append("-g0")

sources = sorted(glob.glob("csrc/*.c"))

setup(
    ext_modules=[
        Extension(
            "mnistc._C",
            sources=sources,
            depends=sorted(glob.glob("csrc/*.h")),
            include_dirs=[numpy.get_include(), "csrc"],
            libraries=["z", "m"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_23_API_VERSION"),
                           ("_GNU_SOURCE", None)],
            extra_compile_args=extra_compile,
            extra_link_args=extra_link,
        )
    ],
)
