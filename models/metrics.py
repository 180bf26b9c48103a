"""Evaluation metrics of a text VAE (or the LSTM LM baseline) over a whole split.

A split is anything with `batches(batch_size, shuffle=False)` yielding batches with
`tokens` (B, T), `lengths` (B,) and `to(device)`, plus `num_sentences` and `num_tokens`.
Every function runs under no_grad in eval mode (restoring the model's mode) and draws its
noise from `generator` only — never the global RNG, so evaluating mid-training cannot change
the training run. `generator=None` means a fresh CPU generator seeded 0. Noise is drawn one
sentence at a time, so a sentence's samples depend only on its place in the split's order,
not on the batch size or on what else shares its batch.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Iterator

import numpy as np
import torch

from models.config import EvalConfig
from models.nets import READINGS, evaluating

LOG_2PI = math.log(2 * math.pi)
# Elements of the largest temporary (z rows × posteriors, float64) in the aggregate-posterior sum.
_CHUNK_ELEMENTS = 1 << 20


def _evaluating(fn):
    """`fn(model, ...)` run `evaluating(model)`."""
    @functools.wraps(fn)
    def wrapper(model, *args, **kwargs):
        with evaluating(model):
            return fn(model, *args, **kwargs)
    return wrapper


def _batches(split, batch_size: int, device,
             limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(tokens, lengths) on `device`, stopping after the first `limit` sentences."""
    if split.num_sentences == 0:
        raise ValueError(f"cannot evaluate on {getattr(split, 'source', 'a split')}: it has no sentences")
    seen = 0
    for batch in split.batches(batch_size, shuffle=False):
        take = len(batch.lengths) if limit is None else min(len(batch.lengths), limit - seen)
        if take <= 0:
            return
        batch = batch.to(device)
        seen += take
        yield batch.tokens[:take], batch.lengths[:take]


def _rng(generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(0)


def _sample(mu: torch.Tensor, logvar: torch.Tensor, samples: int, generator: torch.Generator) -> torch.Tensor:
    """(B, S, D) z ~ N(μ, diag σ²) from μ, log σ² (B, D); one noise draw per sentence (see the
    module docstring)."""
    noise = torch.stack([torch.randn((samples, mu.size(1)), generator=generator, device=generator.device)
                         for _ in range(len(mu))]).to(mu.device)
    return mu.unsqueeze(1) + noise * (0.5 * logvar).exp().unsqueeze(1)


def _log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag exp(logvar)) summed over the last dimension (broadcasting)."""
    return -0.5 * ((z - mu) ** 2 / logvar.exp() + logvar + LOG_2PI).sum(-1)


def _ppl(total_nll: float, split) -> float:
    # Perplexity per predicted token: words and </s>, not <s> (issue 2, Metrics). Beyond
    # e^709 a float overflows: a model that bad has an infinite perplexity, not a traceback.
    per_token = total_nll / split.num_tokens
    return math.inf if per_token > 709 else math.exp(per_token)


@_evaluating
def elbo_terms(model, split, *, batch_size: int, device, generator=None) -> dict[str, float]:
    """Per-sentence means of −ELBO, recon = −log p(x|z) with one z ~ q(z|x), and the analytic
    KL(q(z|x) ‖ N(0, I)) of the trained posterior `model.encode`. The decoder's z comes from
    the posterior it sees (Scale-VAE's scaled mean). For an LM, recon = exact NLL and kl = 0."""
    return _elbo_pass(model, split, batch_size, device, _rng(generator))[0]


def readings(model) -> dict[str, str]:
    """The proposals a model's metrics are given for, with their names' suffixes: both of
    `nets.READINGS` for a scaled model (Scale-VAE), else the one they coincide in."""
    return READINGS if model.is_vae and model.scaled else {"trained": ""}


@_evaluating
def _elbo_pass(model, split, batch_size: int, device,
               generator: torch.Generator) -> tuple[dict[str, float], torch.Tensor | None, torch.Tensor | None]:
    """`elbo_terms` and, for a VAE, the posteriors of `posteriors` (μ, log σ², (N, D)), from one
    encoder pass over the split."""
    sums = {suffix: [0.0, 0.0] for suffix in readings(model).values()}  # recon, kl
    mus, logvars = [], []
    for tokens, lengths in _batches(split, batch_size, device):
        if not model.is_vae:
            sums[""][0] -= model.log_prob(tokens, lengths).sum().item()
            continue
        mu, logvar = model.encode(tokens, lengths)
        mus.append(mu)
        logvars.append(logvar)
        for reading, suffix in readings(model).items():
            q_mu, q_logvar = model.proposal(mu, logvar, reading)
            sums[suffix][1] += (0.5 * (q_mu ** 2 + q_logvar.exp() - q_logvar - 1).sum(-1)).sum().item()
            z = _sample(q_mu, q_logvar, 1, generator)
            sums[suffix][0] -= model.decode_log_prob(tokens, lengths, z).sum().item()
    n = split.num_sentences  # > 0, checked by _batches
    terms = {}
    for suffix, (recon, kl) in sums.items():
        terms.update({f"neg_elbo{suffix}": (recon + kl) / n, f"recon{suffix}": recon / n, f"kl{suffix}": kl / n})
    if not model.is_vae:
        return terms, None, None
    return terms, torch.cat(mus), torch.cat(logvars)


def iw_log_likelihood(model, tokens: torch.Tensor, lengths: torch.Tensor, *, samples: int,
                      samples_per_pass: int, pass_mib: float | None = None, generator=None,
                      reading: str = "trained") -> torch.Tensor:
    """(B,) importance-weighted estimate of log p(x) (Burda et al.; He et al. §6.1, k = 500).

    Proposal q(z|x) from `model.proposal` (`reading`), encoded once; prior `model.log_prior`. All
    `samples` noises are drawn up front, handed to the decoder `samples_per_pass` per sentence at
    a time, and scored there in passes of `pass_mib` MiB (`Decoder.log_prob`); the log-sum-exp
    runs over all k weights at once, so neither size changes the value beyond float rounding.
    Exact log p(x) for an LM. Call under no_grad in eval mode (the split-level functions do).
    """
    if not model.is_vae:
        return model.log_prob(tokens, lengths)
    if samples <= 0 or samples_per_pass <= 0:
        raise ValueError(f"samples ({samples}) and samples_per_pass ({samples_per_pass}) must be positive")
    mu, logvar = model.proposal(*model.encode(tokens, lengths), reading)
    z = _sample(mu, logvar, samples, _rng(generator))  # (B, k, D)
    log_q = _log_normal(z, mu.unsqueeze(1), logvar.unsqueeze(1))  # (B, k)
    log_px_z = torch.cat([model.decode_log_prob(tokens, lengths, z[:, start:start + samples_per_pass],
                                                pass_mib=pass_mib)
                          for start in range(0, samples, samples_per_pass)], dim=1)
    log_w = log_px_z + model.log_prior(z) - log_q
    return torch.logsumexp(log_w, dim=1) - math.log(samples)


@_evaluating
def iw_nll(model, split, *, samples: int, samples_per_pass: int, batch_size: int, device,
           pass_mib: float | None = None, generator=None,
           on_progress: Callable[[int, int], None] | None = None, reading: str = "trained") -> dict[str, float]:
    """NLL = mean over sentences of −log p(x) (IW estimate from `reading`'s proposal; exact for an
    LM), and PPL = exp(Σ −log p(x) / split.num_tokens), named with the reading's suffix.

    `on_progress(scored, sentences)` is called each time the scored sentences pass another tenth
    of the split, the last time at its end: with k = 500 this is most of an evaluation's time
    (at PTB's sizes on one core, longer than a few epochs of training)."""
    total, scored, tenths = 0.0, 0, 0
    generator = _rng(generator)
    for tokens, lengths in _batches(split, batch_size, device):
        total -= iw_log_likelihood(model, tokens, lengths, samples=samples, samples_per_pass=samples_per_pass,
                                   pass_mib=pass_mib, generator=generator, reading=reading).sum().item()
        scored += len(tokens)
        if on_progress is not None and 10 * scored // split.num_sentences > tenths:
            tenths = 10 * scored // split.num_sentences
            on_progress(scored, split.num_sentences)
    suffix = READINGS[reading]
    return {f"nll{suffix}": total / split.num_sentences, f"ppl{suffix}": _ppl(total, split)}


@_evaluating
def posteriors(model, split, *, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """μ, log σ² (N, D) of the trained posterior `model.encode` (raw means, before Scale-VAE's
    factor) for every sentence, in the split's batch order."""
    pairs = [model.encode(tokens, lengths) for tokens, lengths in _batches(split, batch_size, device)]
    return torch.cat([mu for mu, _ in pairs]), torch.cat([logvar for _, logvar in pairs])


def mutual_info_from(mu: torch.Tensor, logvar: torch.Tensor, *, samples: int = 1,
                     generator=None) -> float:
    """He et al. Eq. 5: I = E_x E_q(z|x)[log q(z|x)] − E_q(z)[log q(z)], from μ, log σ² (N, D).

    The aggregate posterior q(z) = (1/N) Σ_n q(z|x_n) runs over all N posteriors given (the
    whole split, not a batch), in chunks of z so memory stays bounded. Both terms are averaged
    over the same z_ns ~ q(z|x_n): unlike the analytic entropy of the reference `calc_mi`, this
    gives 0 (up to float64 rounding) when every q(z|x) is the same, instead of Monte Carlo noise
    of the order of sqrt(D / 2NS) that would read as spurious information.
    """
    n, dim = mu.shape
    if samples <= 0:
        raise ValueError(f"MI needs a positive number of samples, got {samples}")
    z = _sample(mu, logvar, samples, _rng(generator)).double()  # (N, S, D)
    mu, logvar = mu.double(), logvar.double()
    log_q_zx = _log_normal(z, mu.unsqueeze(1), logvar.unsqueeze(1))  # (N, S)
    z = z.reshape(n * samples, dim)
    # log N(z; μ_n, σ_n²) of every z under every posterior as one matrix product instead of an
    # (rows, N, D) tensor: −½ ([z², z] · [a_n, −2 μ_n a_n] + Σ_d (μ² a + log σ²) + D log 2π) with
    # a = 1/σ²; float64 keeps the expanded square exact to ~1e-10 nats.
    inv_var = (-logvar).exp()
    weights = torch.cat([inv_var, -2 * mu * inv_var], dim=1).t()  # (2D, N)
    offset = (mu ** 2 * inv_var + logvar).sum(1) + dim * LOG_2PI  # (N,)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    log_qz = torch.cat([
        torch.logsumexp(torch.addmm(offset, torch.cat([part ** 2, part], dim=1), weights).mul_(-0.5), dim=1)
        for part in z.split(chunk)]) - math.log(n)
    return (log_q_zx.mean() - log_qz.mean()).item()


def mutual_info_per_batch(mu: torch.Tensor, logvar: torch.Tensor, batch_size: int, *, generator=None) -> float:
    """He et al.'s estimator of I_q(x; z) (their code's `calc_mi`, which Li et al. use too,
    footnote 13): for each minibatch of `batch_size` consecutive posteriors (the evaluation's
    batches), the analytic E_q(z|x)[log q(z|x)] minus E[log q(z)] with q(z) the mixture of the
    batch's posteriors and one z per sentence; the sentence-weighted mean over minibatches. It
    is at most log(batch size), unlike `mutual_info_from`'s aggregate over the whole split: the
    papers' tables used this one."""
    generator = _rng(generator)
    total, dim = 0.0, mu.size(1)
    for m, lv in zip(mu.double().split(batch_size), logvar.double().split(batch_size)):
        neg_entropy = (-0.5 * dim * LOG_2PI - 0.5 * (1 + lv).sum(-1)).mean()
        z = _sample(m, lv, 1, generator).double()  # (B, 1, D): one z per sentence, against every posterior
        log_qz = torch.logsumexp(_log_normal(z, m.unsqueeze(0), lv.unsqueeze(0)), dim=1) - math.log(len(m))
        total += (neg_entropy - log_qz.mean()).item() * len(m)
    return total / len(mu)


def mutual_info(model, split, *, batch_size: int, device, generator=None, samples: int = 1) -> float:
    """I_q(x; z) over the whole split (see `mutual_info_from`) under the posterior the decoder
    sees (Song et al. footnote 1: Scale-VAE's scaled means); 0 for an LM."""
    if not model.is_vae:
        return 0.0
    mu, logvar = posteriors(model, split, batch_size=batch_size, device=device)
    return mutual_info_from(mu * model.latent_scale, logvar, samples=samples, generator=generator)


def mean_variances(mu: torch.Tensor) -> torch.Tensor:
    """(D,) A_z = Cov_x(E_q[z]) per dimension (unbiased, as the reference `calc_au`)."""
    if len(mu) < 2:
        raise ValueError(f"active units need at least 2 sentences, got {len(mu)}")
    return mu.double().var(dim=0)


def active_units(model, split, *, batch_size: int, device, threshold: float = 0.01) -> int:
    """Dimensions with A_z ≥ threshold (Burda et al.; He et al. §6.1, 0.01, and `calc_au` of their
    code, which counts equality) over the raw means
    (for Scale-VAE, f·μ would have A_z = des_std² by construction); 0 for an LM."""
    if not model.is_vae:
        return 0
    mu, _ = posteriors(model, split, batch_size=batch_size, device=device)
    return int((mean_variances(mu) >= threshold).sum())


def evaluate(model, split, cfg: EvalConfig, *, batch_size: int, device, generator=None,
             iw: bool = True, mi: bool = True,
             on_progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """neg_elbo, recon, kl; with `iw` nll and ppl; with `mi` mi, au and (`cfg.mi_batch`) mi_batch, He
    et al.'s per-minibatch MI (`mutual_info_per_batch`). A scaled model (Scale-VAE)
    has the first five again under its decoder's proposal, suffixed `_dec` (`readings`).
    `on_progress`: the IW-NLL's (`iw_nll`), over every reading's pass; an LM, whose NLL is
    exact, makes no call.

    For an LM every bound is the exact NLL, and kl, mi and au are 0.
    """
    generator = _rng(generator)  # one stream for all the metrics
    out, mu, logvar = _elbo_pass(model, split, batch_size, device, generator)
    if iw and model.is_vae:
        passes = list(readings(model))
        for i, reading in enumerate(passes):  # progress over all the passes together
            told = None if on_progress is None else (
                lambda scored, total, i=i: on_progress(i * total + scored, len(passes) * total))
            out.update(iw_nll(model, split, samples=cfg.iw_samples, samples_per_pass=cfg.iw_batch,
                              batch_size=batch_size, device=device, pass_mib=cfg.pass_mib, generator=generator,
                              on_progress=told, reading=reading))
    elif iw:
        out.update(nll=out["recon"], ppl=_ppl(out["recon"] * split.num_sentences, split))
    if mi and model.is_vae:
        # The −ELBO pass's posteriors serve both: MI under the decoder's (scaled) posterior, AU on raw μ.
        out.update(mi=mutual_info_from(mu * model.latent_scale, logvar, samples=cfg.mi_samples,
                                       generator=generator),
                   au=float((mean_variances(mu) >= cfg.au_threshold).sum()))
        if cfg.mi_batch:
            out["mi_batch"] = mutual_info_per_batch(mu * model.latent_scale, logvar, batch_size, generator=generator)
    elif mi:
        out.update(mi=0.0, au=0.0, **({"mi_batch": 0.0} if cfg.mi_batch else {}))
    return out


@_evaluating
def posterior_mean_space(model, split, *, batch_size: int, device, grid=(-20.0, 20.0, 0.01),
                         max_sentences: int | None = None,
                         pass_mib: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(μ_θ, μ_φ), each (N,), for a scalar latent (He et al. §2.3, App. A Eq. 6).

    μ_θ(x) = Σ_i z_i p(z_i|x) with p(z|x) ∝ p(x|z) p(z) normalised over the grid
    lo, lo + step, .., hi (4001 points by default); μ_φ(x) the posterior mean. Sentences are
    the first `max_sentences` in the split's batch order; the decoder scores the (sentence, grid
    point) pairs in passes of `pass_mib` MiB.
    """
    if not model.is_vae or model.latent_dim != 1:
        raise ValueError("the posterior mean space needs a VAE with latent_dim 1, got "
                         + (f"latent_dim {model.latent_dim}" if model.is_vae else "a language model"))
    lo, hi, step = grid
    points = torch.linspace(lo, hi, round((hi - lo) / step) + 1, device=device)
    log_prior = model.log_prior(points.unsqueeze(-1))  # (G,)
    mu_theta, mu_phi = [], []
    for tokens, lengths in _batches(split, batch_size, device, max_sentences):
        z = points.view(1, -1, 1).expand(len(tokens), -1, 1)
        log_px_z = model.decode_log_prob(tokens, lengths, z, pass_mib=pass_mib)  # (B, G)
        mu_theta.append(((log_px_z + log_prior).softmax(dim=1) * points).sum(1))
        mu_phi.append(model.encode(tokens, lengths)[0].squeeze(-1))
    return torch.cat(mu_theta).cpu().numpy(), torch.cat(mu_phi).cpu().numpy()


@_evaluating
def feature_cosine_similarity(model, split, *, batch_size: int, device,
                              max_sentences: int | None = 1000) -> float:
    """Mean pairwise cosine similarity of encoder features, self-pairs excluded (Long et al.
    §5.2), over the first `max_sentences` sentences in the split's batch order."""
    if not model.is_vae:
        raise ValueError("feature cosine similarity needs a VAE encoder, got a language model")
    feats = torch.cat([model.features(tokens, lengths)
                       for tokens, lengths in _batches(split, batch_size, device, max_sentences)])
    return mean_pairwise_cosine(feats)


def mean_pairwise_cosine(feats: torch.Tensor) -> float:
    """Mean cosine similarity over ordered pairs i ≠ j of the rows of `feats` (N, H)."""
    n = len(feats)
    if n < 2:
        raise ValueError(f"cosine similarity needs at least 2 sentences, got {n}")
    unit = torch.nn.functional.normalize(feats.double(), dim=1)
    # Σ_{i≠j} cos(f_i, f_j) = ‖Σ_i f̂_i‖² − Σ_i ‖f̂_i‖²; a zero feature contributes nothing.
    total = unit.sum(0).square().sum() - unit.square().sum()
    return (total / (n * (n - 1))).item()
