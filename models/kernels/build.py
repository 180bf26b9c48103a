"""C kernels in this package (`*.c` beside this file), built on first use with the machine's C
compiler (`cc`, or `$CC`) into a cache, and loaded with ctypes; None where they cannot be: no
compiler, a failed build, or `MODELS_NATIVE=off`. Every caller keeps a torch path for that case."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).parent


def compile_flags() -> list[str]:
    # -ffast-math for glibc's vector tanhf and expf, but sums kept in order, and no peeling for
    # alignment (vector and scalar functions round differently): a row's values may not depend on
    # where it lies in memory or on the rows beside it.
    flags = ["-O3", "-march=native", "-ffast-math", "-fno-associative-math",
             "--param=vect-max-peeling-for-alignment=0", "-fPIC"]
    if platform.machine() in ("x86_64", "AMD64"):
        flags.append("-mprefer-vector-width=256")  # some tunings default to 128-bit vectors
    return flags


def _machine_key() -> str:
    """What `-march=native` compiles for: a cache shared across unlike machines keeps one each."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor()


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "vae-collapse-sweeps"


@functools.lru_cache(maxsize=None)
def library(name: str) -> ctypes.CDLL | None:
    """`name`.c built and loaded, or None (with one warning saying why, unless switched off)."""
    if os.environ.get("MODELS_NATIVE", "auto") == "off":
        return None
    source = HERE / f"{name}.c"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        warnings.warn(f"no C compiler (cc, gcc or $CC) to build {source.name}: torch's slower path instead",
                      stacklevel=2)
        return None
    flags = compile_flags()
    key = hashlib.sha256("\0".join([source.read_text(), compiler, *flags, _machine_key()]).encode()).hexdigest()
    path = cache_dir() / f"{name}-{key[:16]}.so"
    if not path.exists():
        try:
            _build(source, compiler, flags, path)
        except (OSError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", "") or str(err)
            warnings.warn(f"could not build {source.name} ({detail.strip()[-400:]}): torch's slower path instead",
                          stacklevel=2)
            return None
    return ctypes.CDLL(str(path))


def _build(source: Path, compiler: str, flags: list[str], path: Path) -> None:
    """Compile, then link without -ffast-math: linked into a shared object, GCC < 13 adds start-up
    code that makes the whole process flush denormals to zero, torch included. With OpenMP where
    the compiler has it (libgomp.so.1, then torch's own copy, already loaded), else without: a
    kernel's `omp` pragmas then run on one thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        obj, lib = Path(tmp) / "kernel.o", Path(tmp) / path.name
        for openmp in (["-fopenmp"], []):
            try:
                for command in ([compiler, *flags, *openmp, "-c", str(source), "-o", str(obj)],
                                [compiler, "-shared", *openmp, str(obj), "-o", str(lib), "-lm"]):
                    subprocess.run(command, check=True, capture_output=True, text=True)
                break
            except subprocess.CalledProcessError:
                if not openmp:
                    raise
        os.replace(lib, path)  # atomic: processes building at once each install a whole file


def ptr(t) -> int:
    """The address a kernel reads or writes: the caller holds `t` while the kernel runs."""
    return t.data_ptr()
