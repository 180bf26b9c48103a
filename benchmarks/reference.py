"""A minimal pure-PyTorch stand-in for He et al.'s reference code (jxhe/vae-lagging-encoder),
written for the benchmarks: the same model, training step and IW-NLL as its text.py on
equal-length batches, so our numbers can be shown as ratios from this repository alone.

As the reference: LSTM encoder on the whole padded batch (its batches have one length), last
state → μ, log σ² without bias; decoder with c0 = W z (no bias), h0 = tanh(c0), z beside every
input embedding, vocabulary layer without bias, cross-entropy that ignores <pad>; one update
= zero grads, backward, one clipped norm over all parameters, encoder and decoder SGD steps.
IW-NLL runs `k / ns` passes, each encoding the batch again and decoding `ns` samples of every
sentence at once.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from models.data import PAD


class ReferenceVAE(nn.Module):
    def __init__(self, vocab_size: int, emb: int = 50, hidden: int = 50, latent: int = 32,
                 dropout: float = 0.5):
        super().__init__()
        self.enc_embed = nn.Embedding(vocab_size, emb)
        self.enc_lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.enc_linear = nn.Linear(hidden, 2 * latent, bias=False)
        self.dec_embed = nn.Embedding(vocab_size, emb)
        self.dropout_in, self.dropout_out = nn.Dropout(dropout), nn.Dropout(dropout)
        self.trans_linear = nn.Linear(latent, hidden, bias=False)
        self.dec_lstm = nn.LSTM(emb + latent, hidden, batch_first=True)
        self.pred_linear = nn.Linear(hidden, vocab_size, bias=False)
        weight = torch.ones(vocab_size)
        weight[PAD] = 0
        self.loss = nn.CrossEntropyLoss(weight=weight, reduction="none")
        for name, param in self.named_parameters():
            nn.init.uniform_(param, *((-0.1, 0.1) if "embed" in name else (-0.01, 0.01)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, (last, _) = self.enc_lstm(self.enc_embed(x))
        mu, logvar = self.enc_linear(last).chunk(2, -1)
        return mu.squeeze(0), logvar.squeeze(0)

    def reconstruct_error(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """−log p(x|z): x (B, T), z (B, ns, D) → (B, ns)."""
        src, tgt = x[:, :-1], x[:, 1:]
        batch, steps = src.shape
        ns, latent = z.size(1), z.size(2)
        emb = self.dropout_in(self.dec_embed(src))
        emb = emb.unsqueeze(1).expand(batch, ns, steps, emb.size(-1)).contiguous().view(batch * ns, steps, -1)
        z_in = z.unsqueeze(2).expand(batch, ns, steps, latent).contiguous().view(batch * ns, steps, latent)
        z_flat = z.reshape(batch * ns, latent)
        c0 = self.trans_linear(z_flat).unsqueeze(0)
        out, _ = self.dec_lstm(torch.cat([emb, z_in], -1), (torch.tanh(c0), c0))
        logits = self.pred_linear(self.dropout_out(out))
        tgt = tgt.unsqueeze(1).expand(batch, ns, steps).contiguous().view(-1)
        return self.loss(logits.view(-1, logits.size(-1)), tgt).view(batch, ns, steps).sum(-1)


def make_optimizers(model: ReferenceVAE, lr: float = 1.0) -> tuple[torch.optim.SGD, torch.optim.SGD]:
    encoder = [p for name, p in model.named_parameters() if name.startswith("enc_")]
    decoder = [p for name, p in model.named_parameters() if not name.startswith("enc_")]
    return torch.optim.SGD(encoder, lr=lr), torch.optim.SGD(decoder, lr=lr)


def train_step(model: ReferenceVAE, optimizers, x: torch.Tensor, kl_weight: float = 1.0,
               clip: float = 5.0) -> tuple[float, float]:
    """One update on batch x; the summed reconstruction and KL, read back as text.py does."""
    for opt in optimizers:
        opt.zero_grad()
    mu, logvar = model.encode(x)
    z = mu.unsqueeze(1) + torch.randn_like(mu).unsqueeze(1) * (0.5 * logvar).exp().unsqueeze(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)
    recon = model.reconstruct_error(x, z).mean(1)
    (recon + kl_weight * kl).mean().backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    for opt in optimizers:
        opt.step()
    return recon.sum().item(), kl.sum().item()


@torch.no_grad()
def nll_iw(model: ReferenceVAE, x: torch.Tensor, k: int = 500, ns: int = 100) -> torch.Tensor:
    """(B,) −log p(x) by k importance samples, ns per pass (the reference's defaults)."""
    log_w = []
    for _ in range(k // ns):
        mu, logvar = model.encode(x)
        std = (0.5 * logvar).exp()
        z = mu.unsqueeze(1) + torch.randn(len(x), ns, mu.size(1), device=mu.device) * std.unsqueeze(1)
        log_prior = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_q = (-0.5 * ((z - mu.unsqueeze(1)) / std.unsqueeze(1)).pow(2)
                 - 0.5 * logvar.unsqueeze(1) - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_w.append(-model.reconstruct_error(x, z) + log_prior - log_q)
    return -(torch.logsumexp(torch.cat(log_w, 1), 1) - math.log(k))
