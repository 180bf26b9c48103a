"""LSTM text VAE and the LSTM language-model baseline.

Shapes: B sentences, T positions (<s> w1 .. wn </s> + padding), K latent samples
per sentence, D latent dimensions, H hidden units, V vocabulary.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.config import ModelConfig
from models.data import UNK


def init_uniform(module: nn.Module) -> None:
    # He et al. App. B / reference code: LSTM and linear weights U(-0.01, 0.01),
    # embeddings U(-0.1, 0.1).
    for name, param in module.named_parameters():
        if "embed" in name:
            nn.init.uniform_(param, -0.1, 0.1)
        else:
            nn.init.uniform_(param, -0.01, 0.01)


def pool_states(states: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Pool LSTM outputs over time, ignoring padding (Long et al. §3.2).

    states (B, T, H), mask (B, T) → (B, H). `absmax` keeps, per unit, the value
    of largest magnitude with its sign.
    """
    mask3 = mask.unsqueeze(-1)
    if kind == "mean":
        return (states * mask3).sum(1) / mask3.sum(1).clamp(min=1)
    if kind == "max":
        return states.masked_fill(~mask3, float("-inf")).max(1).values
    if kind == "absmax":
        magnitude = states.abs().masked_fill(~mask3, float("-inf"))
        index = magnitude.argmax(1, keepdim=True)  # (B, 1, H)
        return states.gather(1, index).squeeze(1)
    raise ValueError(f"unknown pooling {kind!r}")


class Encoder(nn.Module):
    """q(z|x) = N(μ, diag σ²) from an LSTM feature of the sentence."""

    def __init__(self, vocab_size: int, cfg: ModelConfig):
        super().__init__()
        self.pooling = cfg.pooling
        self.embed = nn.Embedding(vocab_size, cfg.enc_emb_dim)
        self.lstm = nn.LSTM(cfg.enc_emb_dim, cfg.enc_hidden, batch_first=True)
        self.to_posterior = nn.Linear(cfg.enc_hidden, 2 * cfg.latent_dim, bias=cfg.output_bias)
        # Seam for methods that normalise μ (BN-VAE replaces it).
        self.mu_transform: nn.Module = nn.Identity()

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The sentence feature (B, H): last hidden state or a pooling of all of them."""
        packed = pack_padded_sequence(self.embed(tokens), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        outputs, (h_n, _) = self.lstm(packed)
        if self.pooling == "last":
            return h_n[-1]
        states, _ = pad_packed_sequence(outputs, batch_first=True, total_length=tokens.size(1))
        mask = torch.arange(tokens.size(1), device=tokens.device)[None, :] < lengths[:, None]
        return pool_states(states, mask, self.pooling)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_posterior(self.features(tokens, lengths)).chunk(2, dim=-1)
        return self.mu_transform(mu), logvar


class Decoder(nn.Module):
    """p(x|z): an LSTM fed z as initial state and beside every input word (He et al. §6)."""

    def __init__(self, vocab_size: int, cfg: ModelConfig, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.word_dropout = cfg.word_dropout
        self.embed = nn.Embedding(vocab_size, cfg.dec_emb_dim)
        self.dropout_in = nn.Dropout(cfg.dec_dropout_in)
        self.dropout_out = nn.Dropout(cfg.dec_dropout_out)
        self.lstm = nn.LSTM(cfg.dec_emb_dim + latent_dim, cfg.dec_hidden, batch_first=True)
        self.to_state = nn.Linear(latent_dim, cfg.dec_hidden, bias=cfg.output_bias) if latent_dim else None
        self.to_vocab = nn.Linear(cfg.dec_hidden, vocab_size, bias=cfg.output_bias)

    def log_prob(self, tokens: torch.Tensor, lengths: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """log p(x|z) summed over predicted tokens (w1 .. </s>, not <s>).

        tokens (B, T), lengths (B,), z (B, K, D) or None → (B, K), K = 1 without z.
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
        emb = emb.unsqueeze(1).expand(batch, samples, steps - 1, emb.size(-1)).reshape(
            batch * samples, steps - 1, emb.size(-1))
        state = None
        if z is not None:
            z_flat = z.reshape(batch * samples, self.latent_dim)
            emb = torch.cat([emb, z_flat.unsqueeze(1).expand(-1, steps - 1, -1)], dim=-1)
            state = self.initial_state(z_flat)
        outputs, _ = self.lstm(emb, state)
        logits = self.to_vocab(self.dropout_out(outputs))  # (B*K, T-1, V)
        log_probs = torch.log_softmax(logits, dim=-1)
        targets = targets.unsqueeze(1).expand(batch, samples, steps - 1).reshape(batch * samples, steps - 1)
        token_lp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        mask = (torch.arange(1, steps, device=tokens.device)[None, :] < lengths[:, None])
        mask = mask.unsqueeze(1).expand(batch, samples, steps - 1).reshape(batch * samples, steps - 1)
        return (token_lp * mask).sum(-1).view(batch, samples)


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


class TextVAE(nn.Module):
    is_vae = True

    def __init__(self, vocab_size: int, cfg: ModelConfig):
        super().__init__()
        self.latent_dim = cfg.latent_dim
        self.encoder = Encoder(vocab_size, cfg)
        self.decoder = Decoder(vocab_size, cfg, cfg.latent_dim)
        # Scale-VAE's factor f (Song et al. §3.1): the decoder sees z ~ N(f·μ, σ²) and,
        # generating, f·z with z ~ N(0, I). Ones for every other method.
        self.register_buffer("latent_scale", torch.ones(cfg.latent_dim))
        init_uniform(self)

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z|x) whose KL to N(0, I) is trained: μ, log σ², each (B, D)."""
        return self.encoder(tokens, lengths)

    def posterior(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior as the decoder sees it at evaluation (μ scaled by f)."""
        mu, logvar = self.encode(tokens, lengths)
        return mu * self.latent_scale, logvar

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, diag f²) summed over the last dimension (the decoder's effective prior)."""
        scale = self.latent_scale
        return (-0.5 * (z / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    def decode_log_prob(self, tokens: torch.Tensor, lengths: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z): tokens (B, T), z (B, K, D) → (B, K)."""
        return self.decoder.log_prob(tokens, lengths, z)

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
