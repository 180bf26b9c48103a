"""`model.kernels`: which arithmetic a model's CPU runs use, resolved once per process."""
from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass

from models.config import ConfigError
from models.kernels import build

LIBRARIES = ("lstm", "vocab")
DEFAULT_TARGET = "native"
"""What `auto` builds for. Every target computes the same bits (models/kernels/__init__.py), so
this is a matter of speed alone: docs/benchmarks.md measures native against x86-64-v3."""
CHOICES = ("auto", "torch", "native", *sorted({t for targets in build.PORTABLE_TARGETS.values() for t in targets}))
"""auto: the C kernels for DEFAULT_TARGET where they build, else torch's path, with a warning;
torch: torch's path; a target (native, x86-64-v3, ...): the C kernels for it, or an error."""
ENVIRONMENT = "MODELS_NATIVE"
"""Overrides every config's `model.kernels` in this process (`off` is `torch`)."""


class KernelsError(ConfigError):
    """A `model.kernels` choice that cannot be honoured here."""


@dataclass(frozen=True)
class Kernels:
    """The resolved choice: C kernels built for `target`, or torch's path (target None) and why."""
    target: str | None
    why_torch: str = ""

    @property
    def active(self) -> bool:
        return self.target is not None

    def describe(self) -> str:
        """One line for a run's record: which arithmetic, built how."""
        if self.target is None:
            return f"torch ({self.why_torch})"
        arch = f"native: {build.native_arch()}" if self.target == "native" else self.target
        return f"C kernels for {arch}, {build.describe_compiler()}"


def arithmetic(kernels: Kernels, device) -> str:
    """One line saying which arithmetic runs on torch device `device`: the kernels, and torch's
    build with the instruction set its own CPU operations chose (they differ between CPUs, unlike
    the kernels'), or the GPU."""
    import torch
    if device.type == "cuda":
        return (f"torch {torch.__version__} on {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}); "
                "C kernels not used on a GPU")
    return f"{kernels.describe()}; torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}"


def requested(choice: str) -> str:
    """`choice`, or the environment's override of it."""
    override = os.environ.get(ENVIRONMENT)
    if override is None:
        return choice
    override = "torch" if override == "off" else override
    if override not in CHOICES:
        raise KernelsError(f"{ENVIRONMENT}={os.environ[ENVIRONMENT]}: not one of off, {', '.join(CHOICES)}")
    return override


@functools.lru_cache(maxsize=None)
def resolve(choice: str) -> Kernels:
    """The kernels `choice` (one of CHOICES; ENVIRONMENT overrides it) gives in this process."""
    asked = requested(choice)
    if asked == "torch":
        why = f"{ENVIRONMENT}={os.environ[ENVIRONMENT]}" if asked != choice else "model.kernels: torch"
        return Kernels(None, why)
    target = DEFAULT_TARGET if asked == "auto" else asked
    try:
        for name in LIBRARIES:
            build.library(name, target)
    except build.BuildError as err:
        if asked != "auto":
            raise KernelsError(f"model.kernels: {asked}: {err}") from None
        warnings.warn(f"C kernels unavailable ({err}): torch's slower path instead", stacklevel=2)
        return Kernels(None, str(err))
    return Kernels(target)
