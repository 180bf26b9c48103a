"""`LSTM`: `nn.LSTM` whose small one-layer CPU runs take the recurrence in `lstm.c`.

At the papers' synthetic sizes (hidden 50) oneDNN's LSTM call costs more in fixed overhead than
in arithmetic (docs/benchmarks.md); the kernel runs the forward pass and the backward recurrence
in C, and torch the gradients' large products. Where the module's `Kernels` are torch's, on a
GPU, beyond `KERNEL_MAX_HIDDEN` or for packed input, the module is `nn.LSTM` itself.
"""
from __future__ import annotations

import ctypes
import functools
from typing import NamedTuple

import torch
from torch import nn

from models.kernels import build
from models.kernels.build import ptr
from models.kernels.choice import Kernels

KERNEL_MAX_HIDDEN = 128
"""Above this hidden size oneDNN is the faster (docs/benchmarks.md: the kernel takes 1/1.06 of
oneDNN's time at 128, 1/0.87 at 256, where W_hh no longer stays in a core's cache)."""


@functools.lru_cache(maxsize=None)
def kernel(target: str):
    """lstm.c built for `target` and loaded, its functions typed."""
    lib = build.library("lstm", target)
    pointer, size = ctypes.c_void_p, ctypes.c_int
    lib.lstm_forward.argtypes = [size] * 5 + [pointer] * 9
    lib.lstm_backward.argtypes = [size] * 4 + [pointer] * 8
    lib.lstm_project.argtypes = [size] * 4 + [pointer] * 4
    lib.lstm_forward_shared.argtypes = [size] * 5 + [ctypes.c_long] + [pointer] * 5
    return lib


class _Recurrence(torch.autograd.Function):
    """lib (`kernel`), x (B, T, I), h0 and c0 (B, H), own (B, 4H) or None: gate inputs the same at
    every step → hidden states (B, T, H) and the last cell (B, H)."""

    @staticmethod
    def forward(ctx, lib, x, h0, c0, w_ih, w_hh, b_ih, b_hh, own=None):
        batch, steps, _ = x.shape
        hidden = w_hh.size(1)
        x = x.contiguous()
        # Held in locals while the kernel reads them.
        w_ih_t, w_hh_t, bias = w_ih.t().contiguous(), w_hh.t().contiguous(), b_ih + b_hh
        hs = x.new_empty(batch, steps + 1, hidden)
        cs = x.new_empty(steps + 1, batch, hidden)
        hs[:, 0] = h0
        cs[0] = c0
        act = x.new_empty(steps, batch, 4 * hidden)
        tanh_c = x.new_empty(steps, batch, hidden)
        own = None if own is None else own.contiguous()
        lib.lstm_forward(torch.get_num_threads(), steps, batch, hidden, x.size(2), ptr(x), ptr(w_ih_t), ptr(bias),
                         None if own is None else ptr(own), ptr(w_hh_t), ptr(hs), ptr(cs), ptr(act), ptr(tanh_c))
        ctx.save_for_backward(x, hs, cs, act, tanh_c, w_ih, w_hh)
        ctx.has_own, ctx.lib = own is not None, lib
        return hs[:, 1:], cs[-1]

    @staticmethod
    def backward(ctx, grad_states, grad_c):
        x, hs, cs, act, tanh_c, w_ih, w_hh = ctx.saved_tensors
        steps, batch, hidden = tanh_c.shape
        lib = ctx.lib
        grad_states = x.new_zeros(batch, steps, hidden) if grad_states is None else grad_states.contiguous()
        dc = x.new_zeros(batch, hidden) if grad_c is None else grad_c.clone(memory_format=torch.contiguous_format)
        dh = x.new_zeros(batch, hidden)
        d_gates = x.new_empty(batch, steps, 4 * hidden)
        w_hh = w_hh.contiguous()
        lib.lstm_backward(torch.get_num_threads(), steps, batch, hidden, ptr(grad_states), ptr(w_hh), ptr(cs),
                          ptr(act), ptr(tanh_c), ptr(d_gates), ptr(dh), ptr(dc))
        flat = d_gates.view(batch * steps, 4 * hidden)
        grad_x = flat.mm(w_ih).view_as(x) if ctx.needs_input_grad[1] else None
        grad_w_ih = flat.t().mm(x.reshape(batch * steps, -1))
        grad_w_hh = flat.t().mm(hs[:, :-1].reshape(batch * steps, hidden))
        grad_b = flat.sum(0)
        grad_own = d_gates.sum(1) if ctx.has_own else None
        return None, grad_x, dh, dc, grad_w_ih, grad_w_hh, grad_b, grad_b, grad_own


class SharedInputs(NamedTuple):
    """The input projection of rows whose step inputs are [x; v]: x per group of `samples`
    consecutive rows and step, v per row (a sentence's words, and each of its samples' z)."""
    per_group: torch.Tensor  # (groups, T, 4H): x · W_x + both biases
    per_row: torch.Tensor  # (rows, 4H): v · W_v
    samples: int
    w_hh_t: torch.Tensor  # (H, 4H): W_hhᵀ, transposed once for every pass


def _project(lib, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(..., 4H) = bias + x (..., I) · weightᵀ, in the kernel's order (`lstm_project`), each row on
    its own. No gradients: see `_Projection`."""
    x = x.contiguous()
    w_t = weight.t().contiguous()
    out = x.new_empty(*x.shape[:-1], weight.size(0))
    lib.lstm_project(torch.get_num_threads(), x.numel() // x.size(-1), x.size(-1), weight.size(0), ptr(x),
                          ptr(w_t), None if bias is None else ptr(bias), ptr(out))
    return out


class _Projection(torch.autograd.Function):
    """`_project` without bias, with gradients: x (N, I), weight (4H, I) → (N, 4H)."""

    @staticmethod
    def forward(ctx, lib, x, weight):
        ctx.save_for_backward(x, weight)
        return _project(lib, x, weight, None)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return None, grad.mm(weight) if ctx.needs_input_grad[1] else None, grad.t().mm(x)


class LSTM(nn.LSTM):
    """`nn.LSTM` (batch first, one layer) with the same parameters and state dict, whose runs
    that `kernel_applies` to go through `lstm.c` as `kernels` says."""

    def __init__(self, *args, kernels: Kernels, **kwargs):
        super().__init__(*args, **kwargs)
        self.kernels = kernels

    def kernel_applies(self, x) -> bool:
        return (self.kernels.active and isinstance(x, torch.Tensor) and x.device.type == "cpu"
                and x.dtype == torch.float32 and self.batch_first and self.num_layers == 1 and not self.bidirectional
                and self.bias and self.proj_size == 0 and self.hidden_size <= KERNEL_MAX_HIDDEN and x.dim() == 3
                and x.size(1) > 0)

    @property
    def _lib(self):
        return kernel(self.kernels.target)

    def forward(self, x, hx=None):
        if not self.kernel_applies(x):
            return super().forward(x, hx)
        return self._run(x, None, hx)

    def forward_repeated(self, x: torch.Tensor, repeated: torch.Tensor, hx=None):
        """`forward` of the inputs [x_t; repeated] at every step t, x (B, T, I_x) and repeated
        (B, I_r) (a decoder's words and z): the kernel projects `repeated` once per row, not
        per step, and no (B, T, I_x + I_r) input is made."""
        if not self.kernel_applies(x):
            return super().forward(torch.cat([x, repeated.unsqueeze(1).expand(-1, x.size(1), -1)], -1), hx)
        split = x.size(-1)
        return self._run(x, _Projection.apply(self._lib, repeated, self.weight_ih_l0[:, split:]), hx,
                         self.weight_ih_l0[:, :split])

    def _run(self, x, own, hx, w_ih=None):
        batch = x.size(0)
        if hx is None:
            h0 = c0 = x.new_zeros(batch, self.hidden_size)
        else:
            h0, c0 = hx[0][0], hx[1][0]
        states, c_n = _Recurrence.apply(self._lib, x, h0, c0, self.weight_ih_l0 if w_ih is None else w_ih,
                                        self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0, own)
        return states, (states[:, -1].unsqueeze(0), c_n.unsqueeze(0))

    def share_inputs(self, x: torch.Tensor, per_row: torch.Tensor, samples: int) -> SharedInputs | None:
        """For `forward_shared`, without gradients: rows r = 0 .. len(per_row)-1 whose input at step
        t is [x[r // samples, t]; per_row[r]], x (groups, T, I_x), per_row (rows, I_v). Each
        projection is computed once, not per row and step (in IW-NLL, the words' is shared by
        k samples, z's by T steps: most of the recurrence's work). None where the kernel does
        not apply."""
        if torch.is_grad_enabled() or not self.kernel_applies(x):
            return None
        split = x.size(-1)
        weight = self.weight_ih_l0.detach()
        return SharedInputs(_project(self._lib, x, weight[:, :split], (self.bias_ih_l0 + self.bias_hh_l0).detach()),
                            _project(self._lib, per_row, weight[:, split:], None), samples,
                            self.weight_hh_l0.detach().t().contiguous())

    def forward_shared(self, shared: SharedInputs, start: int, stop: int, hx) -> torch.Tensor:
        """Hidden states (stop - start, T, H) of rows start .. stop-1 of `shared`, from states hx
        ((1, rows, H) each), bit for bit as `forward_repeated` gives them for the inputs
        `share_inputs` describes (the same sums in the same order)."""
        rows, steps = stop - start, shared.per_group.size(1)
        hs = shared.per_row.new_empty(rows, steps + 1, self.hidden_size)
        hs[:, 0] = hx[0][0]
        cs = hx[1][0].contiguous().clone()
        own = shared.per_row[start:stop]
        self._lib.lstm_forward_shared(torch.get_num_threads(), steps, rows, self.hidden_size, shared.samples, start,
                                      ptr(shared.per_group), ptr(own), ptr(shared.w_hh_t), ptr(hs), ptr(cs))
        return hs[:, 1:]
