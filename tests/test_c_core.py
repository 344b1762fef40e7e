"""Builds every standalone C test program csrc/tests/test_*.c together with all non-Python csrc/*.c files,
with sysconfig's compiler and the sanitizers, runs it, and asserts exit status 0. Skips when no compiler
is found."""
import os
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parent.parent / "csrc"
TESTS = sorted((CSRC / "tests").glob("test_*.c"))
# the library as setup.py builds it, minus the Python bindings (py*.c)
LIB_SOURCES = sorted(p for p in CSRC.glob("*.c") if not p.name.startswith("py"))
FLAGS = ["-std=c11", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer",
         "-D_GNU_SOURCE", "-pthread"]  # _GNU_SOURCE and -pthread as setup.py builds the library
LIBS = ["-lz", "-lm"]


def compiler():
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not cc or not shutil.which(cc[0]):
        pytest.skip(f"no C compiler found ({cc[0] if cc else 'CC unset'})")
    return cc


@pytest.mark.parametrize("src", TESTS, ids=[p.name for p in TESTS])
def test_c_program_passes_under_sanitizers(src, tmp_path):
    exe = tmp_path / src.stem
    cmd = [*compiler(), *FLAGS, "-I", str(CSRC), "-I", str(CSRC / "tests"), str(src),
           *map(str, LIB_SOURCES), "-o", str(exe), *LIBS]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, f"compile failed:\n{' '.join(cmd)}\n{build.stderr}"
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, f"{src.name} exited with {run.returncode}:\n{run.stdout}\n{run.stderr}"


def test_the_engine_test_program_is_collected():
    assert CSRC / "tests" / "test_engine_c.c" in TESTS
