"""Building the C kernels (`*.c` beside this file) for a build target with the machine's C
compiler (`cc`, or `$CC`) into a cache, and loading them with ctypes."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
HEADERS = ("arith.h",)

PORTABLE_TARGETS = {"x86_64": ("x86-64-v2", "x86-64-v3", "x86-64-v4"), "aarch64": ("armv8-a",)}
"""The named instruction sets a kernel can be built for on each architecture, besides `native`
(the building machine's own)."""

_X86_LEVEL_FLAGS = {  # /proc/cpuinfo flags each x86-64 level needs (the psABI's list)
    "x86-64-v2": {"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"},
    "x86-64-v3": {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"},
    "x86-64-v4": {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"},
}


def machine() -> str:
    return {"AMD64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def compile_flags(target: str) -> list[str]:
    """No -ffast-math and no contraction into fused multiply-adds (arith.h: every target computes
    the same bits). -fno-trapping-math changes no value: it lets the compiler turn the selects
    in exp and tanh into vector blends, so that their loops vectorize."""
    flags = ["-O3", f"-march={target}", "-ffp-contract=off", "-fno-trapping-math", "-fPIC"]
    if machine() == "x86_64":
        flags.append("-mprefer-vector-width=256")  # some tunings default to 128-bit vectors
    return flags


def _cpu_flags() -> set[str]:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return set()
    return {flag for line in lines if line.startswith(("flags", "Features")) for flag in line.split(":", 1)[1].split()}


def runs_here(target: str) -> bool:
    """Whether this CPU can run code built for `target`."""
    if target == "native":
        return True
    arch = machine()
    if target not in PORTABLE_TARGETS.get(arch, ()):
        return False
    if arch != "x86_64":
        return True  # armv8-a: every aarch64 CPU
    levels = PORTABLE_TARGETS["x86_64"]
    needed = set().union(*(_X86_LEVEL_FLAGS[level] for level in levels[:levels.index(target) + 1]))
    return needed <= _cpu_flags()


def targets_here() -> list[str]:
    """The targets this machine can build and run: its architecture's named ones it supports, and
    `native`."""
    return [t for t in PORTABLE_TARGETS.get(machine(), ()) if runs_here(t)] + ["native"]


def _machine_key() -> str:
    """What `-march=native` compiles for: a cache shared across unlike machines keeps one each."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags", "Features"))}))
    except OSError:
        return platform.processor()


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "vae-collapse-sweeps"


class BuildError(RuntimeError):
    """A kernel cannot be built or run here; the message says why."""


@functools.lru_cache(maxsize=None)
def library(name: str, target: str) -> ctypes.CDLL:
    """`name`.c built for `target` (cached) and loaded; BuildError where it cannot be."""
    source = HERE / f"{name}.c"
    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler (cc, gcc or $CC)")
    if not runs_here(target):
        raise BuildError(f"this {machine()} CPU cannot run code built for {target}")
    flags = compile_flags(target)
    texts = [source.read_text(), *((HERE / h).read_text() for h in HEADERS)]
    key = hashlib.sha256("\0".join([*texts, cc, *flags, _machine_key() if target == "native" else ""]).encode())
    path = cache_dir() / f"{name}-{target}-{key.hexdigest()[:16]}.so"
    if not path.exists():
        try:
            _build(source, cc, flags, path)
        except (OSError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", "") or str(err)
            raise BuildError(f"could not build {source.name} for {target}: {detail.strip()[-400:]}") from None
    return ctypes.CDLL(str(path))


def _build(source: Path, cc: str, flags: list[str], path: Path) -> None:
    """Compile, then link without -ffast-math (linked into a shared object, GCC < 13 adds start-up
    code that makes the whole process flush denormals to zero, torch included). With OpenMP where
    the compiler has it (libgomp.so.1, then torch's own copy, already loaded), else without: a
    kernel's `omp` pragmas then run on one thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        obj, lib = Path(tmp) / "kernel.o", Path(tmp) / path.name
        for openmp in (["-fopenmp"], []):
            try:
                for command in ([cc, *flags, *openmp, "-c", str(source), "-o", str(obj)],
                                [cc, "-shared", *openmp, str(obj), "-o", str(lib), "-lm"]):
                    subprocess.run(command, check=True, capture_output=True, text=True)
                break
            except subprocess.CalledProcessError:
                if not openmp:
                    raise
        os.replace(lib, path)  # atomic: processes building at once each install a whole file


@functools.lru_cache(maxsize=None)
def describe_compiler() -> str:
    """The compiler's first line of `--version` (e.g. `gcc (Debian 12.2.0-14) 12.2.0`)."""
    cc = compiler()
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError, TypeError):
        return str(cc)


@functools.lru_cache(maxsize=None)
def native_arch() -> str:
    """What `-march=native` resolves to (GCC's name for this CPU, e.g. `znver2`), or `native`."""
    try:
        out = subprocess.run([compiler(), "-march=native", "-Q", "--help=target"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError, TypeError):
        return "native"
    found = next((line.split()[1] for line in out.splitlines() if line.strip().startswith("-march=")
                  and len(line.split()) > 1), None)
    return found or "native"


def ptr(t) -> int:
    """The address a kernel reads or writes: the caller holds `t` while the kernel runs."""
    return t.data_ptr()
