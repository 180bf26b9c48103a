"""log softmax(h Wᵀ + b)[target] per row through `vocab.c`, the logits never written to memory:
what evaluation needs of a vocabulary layer."""
from __future__ import annotations

import ctypes
import functools

import torch
from torch import nn

from models.kernels import build
from models.kernels.build import ptr
from models.kernels.choice import Kernels


@functools.lru_cache(maxsize=None)
def library(target: str):
    """vocab.c built for `target` and loaded, its function typed."""
    lib = build.library("vocab", target)
    lib.vocab_log_probs.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * 5
    return lib


def applies(kernels: Kernels, t: torch.Tensor) -> bool:
    """Whether `target_log_probs` takes `t`: C kernels chosen, a CPU float32 tensor."""
    return kernels.active and t.device.type == "cpu" and t.dtype == torch.float32


def target_log_probs(kernels: Kernels, hidden: torch.Tensor, targets: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """(N,) log softmax(layer(hidden))[target], 0 where the target is negative, where `applies`."""
    out = hidden.new_empty(len(hidden))
    h, t = hidden.contiguous(), targets.contiguous()
    w_t = layer.weight.detach().t().contiguous()  # V·H floats, against N·V·H multiply-adds
    bias = None if layer.bias is None else layer.bias.detach()
    library(kernels.target).vocab_log_probs(torch.get_num_threads(), len(h), h.size(1), w_t.size(1), ptr(h), ptr(w_t),
                                            None if bias is None else ptr(bias), ptr(t), ptr(out))
    return out
