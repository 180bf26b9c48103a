"""LSTM text VAE and the LSTM language-model baseline.

Shapes: B sentences, T positions (<s> w1 .. wn </s> + padding), K latent samples
per sentence, D latent dimensions, H hidden units, V vocabulary.
"""
from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.config import ModelConfig
from models.data import PAD, UNK
from models.kernels import vocab as vocab_kernel
from models.kernels.choice import Kernels, resolve
from models.kernels.lstm import LSTM


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Eval mode (no dropout) without gradients, the model's mode restored after: how metrics
    and decoding run a model mid-training."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def init_uniform(module: nn.Module) -> None:
    # He et al. App. B / reference code: LSTM and linear weights U(-0.01, 0.01),
    # embeddings U(-0.1, 0.1).
    for name, param in module.named_parameters():
        if "embed" in name:
            nn.init.uniform_(param, -0.1, 0.1)
        else:
            nn.init.uniform_(param, -0.01, 0.01)


IGNORE = -100
"""Target id that scores nothing (cross-entropy's default `ignore_index`): the positions after </s>."""


@functools.lru_cache(maxsize=None)
def _positions(steps: int, device: torch.device) -> torch.Tensor:
    return torch.arange(steps, device=device)


def padding_mask(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | None:
    """(B, T) bool, True on real positions; None when every row fills the batch, so batches of
    one length (every synthetic batch, most length-sorted ones) skip packing and masks."""
    steps = tokens.size(1)
    if bool((lengths == steps).all()):
        return None
    return _positions(steps, tokens.device).unsqueeze(0) < lengths.unsqueeze(1)


def pool_states(states: torch.Tensor, mask: torch.Tensor | None, kind: str) -> torch.Tensor:
    """Pool LSTM outputs over time, ignoring padding (Long et al. §3.2).

    states (B, T, H), mask (B, T) or None (no padding) → (B, H). `absmax` keeps, per unit,
    the value of largest magnitude with its sign.
    """
    valid = None if mask is None else mask.unsqueeze(-1)
    if kind == "mean":
        if valid is None:
            return states.sum(1) / states.size(1)
        return (states * valid).sum(1) / valid.sum(1).clamp(min=1)
    if kind not in ("max", "absmax"):
        raise ValueError(f"unknown pooling {kind!r}")
    score = states if kind == "max" else states.abs()
    if valid is not None:
        score = score.masked_fill(~valid, float("-inf"))
    index = score.argmax(1, keepdim=True)  # (B, 1, H)
    return states.gather(1, index).squeeze(1)


class FixedScaleBatchNorm(nn.Module):
    """Batch normalisation of μ (B, D) with a constant scale γ (a buffer) and a learnable shift β.

    Training uses the minibatch statistics and updates running ones, which evaluation
    uses (as nn.BatchNorm1d). A training batch of one sentence has no spread, so it is
    normalised with the running statistics instead of failing.
    """

    def __init__(self, dim: int, gamma: float, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("gamma", torch.full((dim,), float(gamma)))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(mu, self.running_mean, self.running_var, weight=self.gamma, bias=self.beta,
                            training=self.training and mu.size(0) > 1, momentum=self.momentum, eps=self.eps)


class Encoder(nn.Module):
    """q(z|x) = N(μ, diag σ²) from an LSTM feature of the sentence."""

    def __init__(self, vocab_size: int, cfg: ModelConfig):
        super().__init__()
        self.pooling = cfg.pooling
        self.embed = nn.Embedding(vocab_size, cfg.enc_emb_dim)
        self.lstm = LSTM(cfg.enc_emb_dim, cfg.enc_hidden, batch_first=True, kernels=resolve(cfg.kernels))
        self.to_posterior = nn.Linear(cfg.enc_hidden, 2 * cfg.latent_dim, bias=cfg.output_bias)
        # Seam for methods that normalise μ (BN-VAE replaces it).
        self.mu_transform: nn.Module = nn.Identity()

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The sentence feature (B, H): last hidden state or a pooling of all of them."""
        emb = self.embed(tokens)
        mask = padding_mask(tokens, lengths)
        if mask is None:
            states, (h_n, _) = self.lstm(emb)
            return h_n[-1] if self.pooling == "last" else pool_states(states, None, self.pooling)
        if self.lstm.kernel_applies(emb):
            # The recurrence runs left to right, so padding after a row's end never reaches its
            # states: no packing, the last state read at each row's length.
            states, _ = self.lstm(emb)
            if self.pooling == "last":
                return states[_positions(len(states), states.device), lengths - 1]
            return pool_states(states, mask, self.pooling)
        # Packed, so padding never enters the state. The stable sort keeps rows of one length in
        # their order: the LSTM kernel is not blind to row order, and so a batch padded beyond
        # its one length gives the unpadded batch's values bit for bit.
        order = lengths.argsort(descending=True, stable=True)
        restore = order.argsort()
        outputs, (h_n, _) = self.lstm(pack_padded_sequence(emb[order], lengths[order].cpu(), batch_first=True))
        if self.pooling == "last":
            return h_n[-1, restore]
        states, _ = pad_packed_sequence(outputs, batch_first=True, total_length=tokens.size(1))
        return pool_states(states[restore], mask, self.pooling)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_posterior(self.features(tokens, lengths)).chunk(2, dim=-1)
        return self.mu_transform(mu), logvar


class Dropout(nn.Dropout):
    """`nn.Dropout`, whose CPU mask is drawn by `uniform_` rather than `bernoulli_`: the same
    Bernoulli(1 − p) keep mask, scaled by 1 / (1 − p), at 2.5× less RNG time on a CPU, where the
    decoder's two dropouts cost a small model's step a few per cent. Kept because it gained ≥ 5 %
    in one run of the training step at the synthetic profile's batch 16 against `nn.Dropout`
    (1.09×; 1.03× at batch 32: `train_throughput.py --only handwritten`, docs/benchmarks.md,
    2026-12-07, a loaded machine). GPUs keep torch's fused kernel, as does `inplace=True` (the
    mask is applied out of place)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.inplace or x.device.type != "cpu" or not 0.0 < self.p < 1.0:
            return super().forward(x)
        # Drawn in x's logical order (rand_like follows its strides): a kernel's strided output and
        # torch's contiguous one get the same mask from the same seed.
        keep = torch.rand(x.shape, dtype=x.dtype).ge_(self.p).mul_(1.0 / (1.0 - self.p))
        return x * keep


class Decoder(nn.Module):
    """p(x|z): an LSTM fed z as initial state and beside every input word (He et al. §6)."""

    def __init__(self, vocab_size: int, cfg: ModelConfig, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.word_dropout = cfg.word_dropout
        # The padding row takes no gradient, as in He et al.'s code (VarLSTMDecoder).
        self.embed = nn.Embedding(vocab_size, cfg.dec_emb_dim, padding_idx=PAD)
        self.dropout_in = Dropout(cfg.dec_dropout_in)
        self.dropout_out = Dropout(cfg.dec_dropout_out)
        self.kernels = resolve(cfg.kernels)
        self.lstm = LSTM(cfg.dec_emb_dim + latent_dim, cfg.dec_hidden, batch_first=True, kernels=self.kernels)
        self.to_state = nn.Linear(latent_dim, cfg.dec_hidden, bias=cfg.output_bias) if latent_dim else None
        self.to_vocab = nn.Linear(cfg.dec_hidden, vocab_size, bias=cfg.output_bias)

    def log_prob(self, tokens: torch.Tensor, lengths: torch.Tensor, z: torch.Tensor | None, *,
                 pass_mib: float | None = None) -> torch.Tensor:
        """log p(x|z) summed over predicted tokens (w1 .. </s>, not <s>).

        tokens (B, T), lengths (B,), z (B, K, D) or None → (B, K), K = 1 without z. Row r of the
        B·K (sentence, sample) rows is sentence r // K. Under no_grad the rows are scored in
        passes that fit `pass_mib` (see `pass_sizes`) in reused buffers: memory stays flat
        however many samples there are, and the pass size changes no value beyond rounding.
        """
        batch, steps = tokens.shape
        samples = 1 if z is None else z.size(1)
        inputs = tokens[:, :-1]
        targets = tokens[:, 1:]
        if self.training and self.word_dropout > 0:
            # Bowman et al.: replace input words (not <s>) by <unk>.
            drop = torch.rand(inputs.shape, device=inputs.device) < self.word_dropout
            drop[:, 0] = False
            inputs = inputs.masked_fill(drop, UNK)
        emb = self.dropout_in(self.embed(inputs))  # (B, T-1, E)
        mask = padding_mask(tokens, lengths)
        if mask is not None:
            targets = targets.masked_fill(~mask[:, 1:], IGNORE)
        z_rows = None if z is None else z.reshape(batch * samples, self.latent_dim)
        if not torch.is_grad_enabled():
            return self._score_in_passes(emb, targets, z_rows, samples, pass_mib).view(batch, samples)
        total = batch * samples
        hidden = self._hidden(_rows(emb, 0, total, samples), z_rows)
        token_lp = TargetLogProb.apply(hidden.flatten(0, 1), self.to_vocab.weight, self.to_vocab.bias,
                                       _rows(targets, 0, total, samples).flatten())
        return token_lp.view(batch, samples, steps - 1).sum(-1)

    def _score_in_passes(self, emb: torch.Tensor, targets: torch.Tensor, z_rows: torch.Tensor | None,
                         samples: int, pass_mib: float | None) -> torch.Tensor:
        """(B·K,) log p(x|z) of every row, without gradients, a budget's worth of rows at a time."""
        total, positions = len(emb) * samples, targets.size(1)
        rows, chunk = pass_sizes(positions, self.lstm, self.to_vocab.out_features, pass_mib, emb.device)
        buffers = None if vocab_kernel.applies(self.kernels, emb) else emb.new_empty(
            2, min(chunk, rows * positions), self.to_vocab.out_features)
        out = emb.new_empty(total)
        shared = None if z_rows is None else self.lstm.share_inputs(emb, z_rows, samples)
        for start in range(0, total, rows):
            stop = min(start + rows, total)
            if shared is not None:  # each sentence's words projected once for all its samples
                hidden = self.dropout_out(self.lstm.forward_shared(shared, start, stop,
                                                                   self.initial_state(z_rows[start:stop])))
            else:
                hidden = self._hidden(_rows(emb, start, stop, samples), None if z_rows is None else z_rows[start:stop])
            token_lp = _target_log_probs(hidden.flatten(0, 1), _rows(targets, start, stop, samples).flatten(),
                                         self.to_vocab, buffers, self.kernels)
            out[start:stop] = token_lp.view(stop - start, positions).sum(-1)
        return out

    def _hidden(self, emb: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """LSTM outputs (R, T-1, H), after output dropout, of input embeddings (R, T-1, E) and z (R, D)."""
        if z is None:
            outputs, _ = self.lstm(emb)
        else:  # z beside every input word
            outputs, _ = self.lstm.forward_repeated(emb, z, self.initial_state(z))
        return self.dropout_out(outputs)

    def initial_state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM's (h0, c0) for z (N, D): reference code, c0 = W z and h0 = tanh(c0)."""
        c0 = self.to_state(z).unsqueeze(0)
        return torch.tanh(c0), c0

    def step(self, words: torch.Tensor, z: torch.Tensor | None, state) -> tuple[torch.Tensor, tuple]:
        """One decoding step, for generation (no dropout): words (N,) are the previous words,
        z (N, D) or None; state None starts from z. Returns the next word's logits (N, V) and
        the state."""
        if state is None and z is not None:
            state = self.initial_state(z)
        emb = self.embed(words).unsqueeze(1)  # (N, 1, E)
        if z is not None:
            emb = torch.cat([emb, z.unsqueeze(1)], dim=-1)
        output, state = self.lstm(emb, state)
        return self.to_vocab(output[:, 0]), state


DEFAULT_PASS_MIB = {"cpu": 2.0, "cuda": 256.0}
"""An evaluation pass's memory when none is set: on a CPU, per torch thread, little enough to
stay in each core's cache (docs/benchmarks.md: on torch's path 2 MiB was fastest with 1 thread,
4 with 2, larger passes slower; with models/kernels/vocab.c larger ones gain at most 5-8 %); on a GPU,
enough to keep it busy."""


def pass_sizes(positions: int, lstm: nn.LSTM, vocab: int, pass_mib: float | None,
               device: torch.device) -> tuple[int, int]:
    """(rows per LSTM pass, positions per vocabulary pass) for `pass_mib` MiB of float32: the
    budget bounds each stage's largest temporaries, the LSTM's inputs or gates (rows × positions
    × max(input, 4H)) and, where torch computes them (no `vocab_kernel.applies`), the logits with their
    log-softmax (2 × positions × V)."""
    if pass_mib is None:
        pass_mib = DEFAULT_PASS_MIB.get(device.type, DEFAULT_PASS_MIB["cuda"])
        if device.type == "cpu":
            pass_mib *= torch.get_num_threads()
    floats = int(pass_mib * 2 ** 20) // 4
    width = max(lstm.input_size, 4 * lstm.hidden_size)
    return max(1, floats // (positions * width)), max(1, floats // (2 * vocab))


def _rows(per_sentence: torch.Tensor, start: int, stop: int, samples: int) -> torch.Tensor:
    """Rows start .. stop-1 of the (sentence, sample) layout from a per-sentence tensor (B, ...)."""
    if samples == 1:
        return per_sentence[start:stop]
    index = torch.arange(start, stop, device=per_sentence.device) // samples
    return per_sentence.index_select(0, index)


def _target_log_probs(hidden: torch.Tensor, targets: torch.Tensor, layer: nn.Linear,
                      buffers: torch.Tensor | None, kernels: Kernels) -> torch.Tensor:
    """log softmax(layer(hidden))[target] (N,), 0 where the target is IGNORE; no (N, V) tensor is
    ever allocated. In C where `vocab_kernel.applies`, the logits never leaving the cache;
    otherwise `buffers.size(1)` positions at a time in the two buffers (2, n, V)."""
    if vocab_kernel.applies(kernels, hidden):
        return vocab_kernel.target_log_probs(kernels, hidden, targets, layer)
    out = hidden.new_empty(len(hidden))
    logits, log_probs = buffers
    for start in range(0, len(hidden), len(logits)):
        h, t = hidden[start:start + len(logits)], targets[start:start + len(logits)]
        scores = torch.mm(h, layer.weight.t(), out=logits[:len(h)])
        if layer.bias is not None:
            scores.add_(layer.bias)
        picked = torch.log_softmax(scores, 1, out=log_probs[:len(h)]).gather(1, t.clamp(min=0).unsqueeze(1))
        out[start:start + len(h)] = picked.squeeze(1).masked_fill_(t == IGNORE, 0.0)
    return out


class TargetLogProb(torch.autograd.Function):
    """log softmax(hidden Wᵀ + b)[target] per position (N,), 0 where the target is IGNORE.

    What `log_softmax` + `gather` (or cross-entropy) compute, fused with the vocabulary layer:
    the forward keeps exp(logits − max) and the backward turns it into the logits' gradient
    g·(onehot − softmax) in place, so a training step makes one (N, V) tensor instead of four
    and runs exp once. (Without gradients, `_target_log_probs` is faster: no exp is kept.)
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor) -> torch.Tensor:
        logits = hidden @ weight.t() if bias is None else torch.addmm(bias, hidden, weight.t())
        safe = targets.clamp(min=0)
        picked = logits.gather(1, safe.unsqueeze(1)).squeeze(1)
        top = logits.amax(1, keepdim=True)
        total = logits.sub_(top).exp_().sum(1)  # the logits now hold exp(logits − max)
        ctx.save_for_backward(hidden, weight, targets, logits, total)
        ctx.has_bias = bias is not None
        return (picked - top.squeeze(1) - total.log()).masked_fill_(targets == IGNORE, 0.0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        hidden, weight, targets, unnormalised, total = ctx.saved_tensors
        grad = grad.masked_fill(targets == IGNORE, 0.0)
        grad_logits = unnormalised.mul_((-grad / total).unsqueeze(1))  # −g · softmax
        grad_logits.scatter_add_(1, targets.clamp(min=0).unsqueeze(1), grad.unsqueeze(1))
        grad_hidden = grad_logits @ weight if ctx.needs_input_grad[0] else None
        grad_weight = grad_logits.t() @ hidden if ctx.needs_input_grad[1] else None
        grad_bias = grad_logits.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_hidden, grad_weight, grad_bias, None


READINGS = {"trained": "", "decoder": "_dec"}
"""The two proposals q(z|x) of a scaled model's metrics, and the suffix of their metric names
(`TextVAE.proposal`)."""


class TextVAE(nn.Module):
    """The LSTM text VAE of He et al. (§6): the encoder's q(z|x) = N(μ, diag σ²), the prior
    p(z) = N(0, I), and a decoder p(x|z) fed z as its initial state and beside every word.

    Scale-VAE (Song et al. §3.1; models/methods/scale.py) puts a per-dimension factor f between
    z and the decoder. The generative model every metric and every sample describes is then
    z ~ N(0, I), x ~ p(x | f·z), as Song et al. generate ("after sampling a latent variable z
    from the prior p(z), we multiply it by the factor f", §3.1), with f the factor the decoder
    trained with (`latent_scale`; ones for every other method, where all of this is the plain
    VAE). Training feeds the decoder f·μ + σε, which is z ~ N(μ, σ²/f²) of this model, while its
    KL term is that of N(μ, σ²). Song et al. do not say which their IW-NLL proposes from, so a
    scaled model's metrics are given for both (`READINGS`, `proposal`): "trained", N(μ, σ²), whose
    KL the objective holds (metrics without a suffix), and "decoder", N(μ, σ²/f²), the input
    the decoder trained on (suffix `_dec`). Each is a bound on the same model's NLL with its own
    ELBO; the first is tight in the dimensions the decoder ignores, the second in those it uses.
    """
    is_vae = True

    def __init__(self, vocab_size: int, cfg: ModelConfig):
        super().__init__()
        self.latent_dim = cfg.latent_dim
        self.encoder = Encoder(vocab_size, cfg)
        self.decoder = Decoder(vocab_size, cfg, cfg.latent_dim)
        self.register_buffer("latent_scale", torch.ones(cfg.latent_dim))
        init_uniform(self)

    @property
    def scaled(self) -> bool:
        """Whether a factor f ≠ 1 stands between z and the decoder (Scale-VAE)."""
        return not bool((self.latent_scale == 1).all())

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z|x) whose KL to N(0, I) is trained: μ, log σ², each (B, D)."""
        return self.encoder(tokens, lengths)

    def proposal(self, mu: torch.Tensor, logvar: torch.Tensor,
                 reading: str = "trained") -> tuple[torch.Tensor, torch.Tensor]:
        """μ, log σ² (B, D) of the q(z|x) a metric's `reading` (READINGS) samples z from, given the
        encoder's μ, log σ²."""
        return (mu, logvar) if reading == "trained" else (mu, logvar - 2 * self.latent_scale.log())

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I) summed over the last dimension."""
        return (-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)

    def decode_log_prob(self, tokens: torch.Tensor, lengths: torch.Tensor, z: torch.Tensor, *,
                        pass_mib: float | None = None) -> torch.Tensor:
        """log p(x|z), the decoder fed f·z: tokens (B, T), z (B, K, D) → (B, K) (`Decoder.log_prob`)."""
        return self.decoder.log_prob(tokens, lengths, z * self.latent_scale if self.scaled else z, pass_mib=pass_mib)

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder.features(tokens, lengths)


class LSTMLM(nn.Module):
    """The decoder without z: the reference NLL every table reports."""
    is_vae = False

    def __init__(self, vocab_size: int, cfg: ModelConfig):
        super().__init__()
        self.decoder = Decoder(vocab_size, cfg, latent_dim=0)
        init_uniform(self)

    def log_prob(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Exact log p(x): (B,)."""
        return self.decoder.log_prob(tokens, lengths, None).squeeze(1)


def build_model(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    return LSTMLM(vocab_size, cfg) if cfg.kind == "lm" else TextVAE(vocab_size, cfg)
