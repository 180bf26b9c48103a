"""Metrics against closed forms, quadrature and invariances, on tiny real models."""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from models import metrics as M
from models.config import EvalConfig, ModelConfig
from models.data import Split
from models.nets import DEFAULT_PASS_MIB, IGNORE, LSTMLM, TargetLogProb, TextVAE, padding_mask, pass_sizes
from models.plots import plot_posterior_mean_space

VOCAB = 7
CPU = torch.device("cpu")


def make_split(sentences) -> Split:
    """A real Split from lists of word ids (ids ≥ 4; the specials are added when batching)."""
    lengths = [len(s) for s in sentences]
    ids = np.array([w for s in sentences for w in s], dtype=np.int64)
    return Split("test", "test", ids, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def random_split(n: int, seed: int = 0, max_len: int = 5) -> Split:
    rng = np.random.default_rng(seed)
    return make_split([rng.integers(4, VOCAB, rng.integers(1, max_len + 1)).tolist() for _ in range(n)])


def tiny_model(latent_dim: int = 1, kind: str = "vae", spread: float = 0.8, seed: int = 0, **model):
    """A real TextVAE / LSTMLM with weights U(-spread, spread), so z visibly changes p(x|z)
    (the papers' U(-0.01, 0.01) init makes every sentence nearly independent of z)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(kind=kind, enc_emb_dim=4, enc_hidden=4, dec_emb_dim=4, dec_hidden=4,
                      latent_dim=latent_dim, **model)
    net = (LSTMLM if kind == "lm" else TextVAE)(VOCAB, cfg)
    for param in net.parameters():
        nn.init.uniform_(param, -spread, spread)
    return net


class TablePosterior(nn.Module):
    """Posterior family with chosen q(z|x_n) = N(mu[n], diag exp(logvar[n])): sentence n is the
    single word 4 + n, so it runs through the real split/batch path of the metrics."""
    is_vae = True

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor):
        super().__init__()
        self.mu, self.logvar, self.latent_dim = mu, logvar, mu.size(1)
        self.register_buffer("latent_scale", torch.ones(mu.size(1)))

    def encode(self, tokens, lengths):
        return self.mu[tokens[:, 1] - 4], self.logvar[tokens[:, 1] - 4]

    scaled, proposal, log_prior = TextVAE.scaled, TextVAE.proposal, TextVAE.log_prior

    def decode_log_prob(self, tokens, lengths, z, pass_mib=None):
        return torch.zeros(z.shape[:2])  # a decoder that ignores z: only the posterior is under test

    def split(self) -> Split:
        return make_split([[4 + n] for n in range(len(self.mu))])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mi_and_au_vanish_when_every_posterior_is_the_prior():
    model = tiny_model(latent_dim=2)
    nn.init.zeros_(model.encoder.to_posterior.weight)  # no bias: μ = 0, log σ² = 0 for every x
    split = random_split(40)
    mi = M.mutual_info(model, split, batch_size=8, device=CPU, generator=gen(), samples=3)
    assert mi == pytest.approx(0, abs=1e-6)
    assert M.active_units(model, split, batch_size=8, device=CPU) == 0
    assert M.elbo_terms(model, split, batch_size=8, device=CPU)["kl"] == pytest.approx(0, abs=1e-6)


def test_mi_matches_the_gaussian_closed_form_over_the_whole_split():
    # μ_n ~ N(0, s² I), σ fixed: q(z) → N(0, (s² + σ²) I), so I = D/2 · log(1 + s²/σ²) = 3.82 nats.
    # A per-batch aggregate posterior could not exceed log(batch_size) = log 16 = 2.77.
    n, dim, s, sigma = 3000, 2, 2.0, 0.3
    mu = s * torch.randn(n, dim, generator=gen(1))
    toy = TablePosterior(mu, torch.full((n, dim), 2 * math.log(sigma)))
    expected = dim / 2 * math.log(1 + s ** 2 / sigma ** 2)
    estimate = M.mutual_info(toy, toy.split(), batch_size=16, device=CPU, generator=gen(2), samples=2)
    assert estimate == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize("chunk_elements", [1 << 20, 40])
def test_mi_equals_the_direct_sum_over_every_posterior(monkeypatch, chunk_elements):
    monkeypatch.setattr(M, "_CHUNK_ELEMENTS", chunk_elements)  # 40: one z row per chunk
    n, dim, samples = 40, 3, 2
    mu = 2 * torch.randn(n, dim, generator=gen(1))
    logvar = torch.randn(n, dim, generator=gen(2)) - 2
    z = M._sample(mu, logvar, samples, gen(3)).double()  # the draws mutual_info_from makes
    mu, logvar = mu.double(), logvar.double()
    log_q_zx = M._log_normal(z, mu[:, None], logvar[:, None])  # (N, S)
    log_qz = torch.logsumexp(M._log_normal(z.reshape(-1, 1, dim), mu, logvar), 1) - math.log(n)  # (N·S, N, D)
    expected = (log_q_zx.mean() - log_qz.mean()).item()
    assert M.mutual_info_from(mu.float(), logvar.float(), samples=samples, generator=gen(3)) == \
        pytest.approx(expected, abs=1e-9)


def test_evaluate_gives_what_the_separate_metrics_give_from_the_same_stream():
    # evaluate encodes the split once for −ELBO, MI and AU; the values must be those of the
    # separate passes, drawing from one generator in the same order.
    model, split = tiny_model(latent_dim=2), random_split(20)
    cfg = EvalConfig(iw_samples=10, iw_batch=4, mi_samples=2)
    stream = gen(5)
    expected = M.elbo_terms(model, split, batch_size=6, device=CPU, generator=stream)
    expected.update(M.iw_nll(model, split, samples=10, samples_per_pass=4, batch_size=6, device=CPU,
                             generator=stream))
    expected.update(mi=M.mutual_info(model, split, batch_size=6, device=CPU, generator=stream, samples=2),
                    au=float(M.active_units(model, split, batch_size=6, device=CPU)))
    mu, logvar = M.posteriors(model, split, batch_size=6, device=CPU)
    expected.update(mi_batch=M.mutual_info_per_batch(mu, logvar, 6, generator=stream))
    assert M.evaluate(model, split, cfg, batch_size=6, device=CPU, generator=gen(5)) == expected


def test_active_units_count_dimensions_whose_mean_varies():
    variances = torch.tensor([0.5, 0.02, 0.005, 0.0])
    signs = torch.tensor([1.0, -1.0]).repeat(50).unsqueeze(1)  # (100, 1), mean 0
    mu = signs * variances.sqrt() + torch.tensor([3.0, -1.0, 0.5, 2.0])  # offsets do not count
    toy = TablePosterior(mu, torch.zeros_like(mu))
    split = toy.split()
    got = M.mean_variances(M.posteriors(toy, split, batch_size=7, device=CPU)[0])
    torch.testing.assert_close(got, variances.double() * 100 / 99)  # unbiased, as calc_au
    assert M.active_units(toy, split, batch_size=7, device=CPU) == 2
    assert M.active_units(toy, split, batch_size=7, device=CPU, threshold=0.001) == 3


def test_iw_nll_is_below_neg_elbo():
    model, split = tiny_model(latent_dim=2), random_split(30)
    # −ELBO has one sample per sentence: average several seeds to compare expectations.
    neg_elbo = np.mean([M.elbo_terms(model, split, batch_size=8, device=CPU, generator=gen(seed))["neg_elbo"]
                        for seed in range(10)])
    nll = M.iw_nll(model, split, samples=200, samples_per_pass=50, batch_size=8, device=CPU,
                   generator=gen())["nll"]
    assert nll < neg_elbo - 0.05


def quadrature_log_px(model, split) -> torch.Tensor:
    """log p(x) = log ∫ p(x|z) p(z) dz by a Riemann sum on [-12, 12], step 0.005."""
    grid = torch.arange(-12, 12 + 1e-9, 0.005)
    batch = next(split.batches(split.num_sentences, shuffle=False))
    with torch.no_grad():
        z = grid.view(1, -1, 1).expand(len(batch.tokens), -1, 1)
        log_joint = model.decode_log_prob(batch.tokens, batch.lengths, z) + model.log_prior(grid.unsqueeze(-1))
    return torch.logsumexp(log_joint, dim=1) + math.log(0.005)


def test_iw_nll_matches_quadrature_on_a_scalar_latent():
    model, split = tiny_model(latent_dim=1, output_bias=True), random_split(6)
    with torch.no_grad():
        # Let z matter more (posterior sd ≈ 0.8 against the prior's 1), and use a proposal
        # N(0, 2) wider than every posterior so that 2000 samples give a tight estimate.
        model.decoder.to_state.weight.mul_(3)
        model.decoder.lstm.weight_ih_l0[:, -1].mul_(3)
        model.encoder.to_posterior.weight.zero_()
        model.encoder.to_posterior.bias.copy_(torch.tensor([0.0, math.log(2.0)]))
    exact_nll = -quadrature_log_px(model.eval(), split).mean().item()
    out = M.iw_nll(model, split, samples=2000, samples_per_pass=500, batch_size=4, device=CPU, generator=gen())
    assert out["nll"] == pytest.approx(exact_nll, abs=0.01)
    assert out["ppl"] == pytest.approx(math.exp(out["nll"] * split.num_sentences / split.num_tokens))


def test_neither_pass_size_memory_budget_nor_batch_size_changes_the_iw_estimate():
    model, split = tiny_model(latent_dim=2), random_split(12)
    # 1e-4 MiB: one (sentence, sample) row per LSTM pass, one position per vocabulary pass.
    assert pass_sizes(5, model.decoder.lstm, VOCAB, 1e-4, CPU) == (1, 1)
    threads = torch.get_num_threads()
    try:  # the CPU default is per thread: each core's cache holds its share of a pass
        for count in (1, 2):
            torch.set_num_threads(count)
            assert pass_sizes(5, model.decoder.lstm, VOCAB, None, CPU) == pass_sizes(
                5, model.decoder.lstm, VOCAB, count * DEFAULT_PASS_MIB["cpu"], CPU)
    finally:
        torch.set_num_threads(threads)
    settings = [(50, 12, None), (7, 12, None), (7, 5, None), (50, 12, 1e-4), (50, 5, 0.01)]
    values = [M.iw_nll(model, split, samples=50, samples_per_pass=per_pass, batch_size=batch, pass_mib=mib,
                       device=CPU, generator=gen(3))["nll"] for per_pass, batch, mib in settings]
    assert values == pytest.approx([values[0]] * len(settings), rel=1e-6)


def test_iw_progress_is_told_at_each_tenth_of_the_split_and_changes_no_value():
    model, split = tiny_model(latent_dim=2), random_split(23)
    calls = []
    seen = M.iw_nll(model, split, samples=8, samples_per_pass=4, batch_size=2, device=CPU, generator=gen(5),
                    on_progress=lambda scored, total: calls.append((scored, total)))
    assert seen == M.iw_nll(model, split, samples=8, samples_per_pass=4, batch_size=2, device=CPU, generator=gen(5))
    # Batches of 2 sentences out of 23: one call per tenth passed, the last at the split's end.
    assert calls == [(4, 23), (6, 23), (8, 23), (10, 23), (12, 23), (14, 23), (18, 23), (20, 23), (22, 23),
                     (23, 23)]
    calls.clear()
    M.iw_nll(model, split, samples=8, samples_per_pass=4, batch_size=64, device=CPU, generator=gen(5),
             on_progress=lambda scored, total: calls.append((scored, total)))
    assert calls == [(23, 23)]  # one batch: told once, at the end


def direct_log_prob(model, tokens, lengths, z) -> torch.Tensor:
    """log p(x|z) (B, K) written out plainly, as the reference code computes it: every row's
    embeddings beside z, c0 = W z, h0 = tanh(c0), log-softmax, padding masked."""
    dec = model.decoder
    batch, steps = tokens.shape
    samples = z.size(1)
    emb = dec.embed(tokens[:, :-1]).repeat_interleave(samples, 0)
    z_rows = z.reshape(batch * samples, -1)
    c0 = dec.to_state(z_rows).unsqueeze(0)
    out, _ = dec.lstm(torch.cat([emb, z_rows.unsqueeze(1).expand(-1, steps - 1, -1)], -1), (torch.tanh(c0), c0))
    log_probs = torch.log_softmax(dec.to_vocab(out), -1)
    targets = tokens[:, 1:].repeat_interleave(samples, 0)
    token_lp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mask = (torch.arange(1, steps) < lengths[:, None]).repeat_interleave(samples, 0)
    return (token_lp * mask).sum(-1).view(batch, samples)


@pytest.mark.parametrize("bias", [False, True])
def test_decoding_in_passes_and_the_training_path_give_the_plain_log_likelihood(bias):
    model = tiny_model(latent_dim=2, output_bias=bias).eval()
    batch = next(random_split(9).batches(9, shuffle=False))
    assert padding_mask(batch.tokens, batch.lengths) is not None  # ragged: the padded path
    z = torch.randn(9, 13, 2, generator=gen())
    expected = direct_log_prob(model, batch.tokens, batch.lengths, z)
    training = model.decode_log_prob(batch.tokens, batch.lengths, z)
    assert training.requires_grad
    with torch.no_grad():
        passes = model.decode_log_prob(batch.tokens, batch.lengths, z, pass_mib=1e-3)
    torch.testing.assert_close(training, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(passes, expected.detach(), rtol=1e-5, atol=1e-5)


def test_fused_vocabulary_layer_has_the_gradients_of_log_softmax():
    gens = gen(4)
    hidden, weight, bias = (torch.randn(*shape, dtype=torch.double, generator=gens, requires_grad=True)
                            for shape in ((7, 5), (11, 5), (11,)))
    targets = torch.randint(0, 11, (7,), generator=gens)
    targets[2] = IGNORE
    upstream = torch.randn(7, dtype=torch.double, generator=gens)
    plain = torch.log_softmax(hidden @ weight.t() + bias, -1).gather(1, targets.clamp(min=0)[:, None]).squeeze(1)
    plain = plain.masked_fill(targets == IGNORE, 0)
    fused = TargetLogProb.apply(hidden, weight, bias, targets)
    torch.testing.assert_close(fused, plain)
    for got, want in zip(torch.autograd.grad(fused, (hidden, weight, bias), upstream),
                         torch.autograd.grad(plain, (hidden, weight, bias), upstream)):
        torch.testing.assert_close(got, want)


class LargestAllocation(TorchDispatchMode):
    """The largest tensor (bytes) any op returns while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in (t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)):
            self.largest = max(self.largest, tensor.numel() * tensor.element_size())
        return out


def test_evaluation_passes_stay_within_their_memory_budget():
    # 100 samples of 4 sentences over 400 words: the logits of all rows would take 3.8 MB.
    torch.manual_seed(0)
    cfg = ModelConfig(enc_emb_dim=8, enc_hidden=8, dec_emb_dim=8, dec_hidden=8, latent_dim=2)
    model = TextVAE(400, cfg).eval()
    tokens = torch.randint(4, 400, (4, 7), generator=gen())
    lengths = torch.full((4,), 7)
    z = torch.randn(4, 100, 2, generator=gen())
    budget = 0.05
    with torch.no_grad():
        for mib in (budget, 100.0):
            with LargestAllocation() as seen:
                model.decode_log_prob(tokens, lengths, z, pass_mib=mib)
            if mib == budget:
                assert seen.largest <= budget * 2 ** 20
            else:
                assert seen.largest > budget * 2 ** 20  # the probe sees the logits


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "absmax"])
def test_padding_never_changes_a_metric(pooling):
    model = tiny_model(latent_dim=2, pooling=pooling).eval()
    short = [4, 5]
    # Batches are sorted by length, so the short sentence is row 0 of the padded batch too.
    alone = next(make_split([short]).batches(1, shuffle=False))
    padded = next(make_split([short, [6, 5, 4, 6, 5], [5, 5, 6, 4]]).batches(3, shuffle=False))
    assert padded.tokens.size(1) > alone.tokens.size(1)
    with torch.no_grad():
        for a, b in zip(model.encode(alone.tokens, alone.lengths),
                        model.encode(padded.tokens, padded.lengths)):
            torch.testing.assert_close(a[0], b[0])
        z = torch.randn(1, 5, 2, generator=gen())
        torch.testing.assert_close(model.decode_log_prob(alone.tokens, alone.lengths, z)[0],
                                   model.decode_log_prob(padded.tokens, padded.lengths, z.expand(3, -1, -1))[0])
        kwargs = dict(samples=20, samples_per_pass=6)
        torch.testing.assert_close(
            M.iw_log_likelihood(model, alone.tokens, alone.lengths, generator=gen(), **kwargs)[0],
            M.iw_log_likelihood(model, padded.tokens, padded.lengths, generator=gen(), **kwargs)[0])


def test_lm_metrics_are_the_exact_log_likelihood():
    model, split = tiny_model(kind="lm"), random_split(15)
    batch = next(split.batches(15, shuffle=False))
    with torch.no_grad():
        log_px = model.eval().log_prob(batch.tokens, batch.lengths)
    num_tokens = sum(int(n) - 1 for n in batch.lengths)  # words + </s>, not <s>
    assert split.num_tokens == num_tokens
    out = M.evaluate(model, split, EvalConfig(iw_samples=3), batch_size=4, device=CPU)
    assert out["nll"] == pytest.approx(-log_px.mean().item(), rel=1e-6)
    assert out["ppl"] == pytest.approx(math.exp(-log_px.sum().item() / num_tokens), rel=1e-6)
    assert out["neg_elbo"] == out["recon"] == out["nll"]
    assert (out["kl"], out["mi"], out["au"]) == (0, 0, 0)
    iw = M.iw_nll(model, split, samples=3, samples_per_pass=1, batch_size=4, device=CPU)
    assert iw == pytest.approx({"nll": out["nll"], "ppl": out["ppl"]}, rel=1e-6)


def test_evaluate_restores_mode_leaves_global_rng_alone_and_is_reproducible():
    model, split = tiny_model(latent_dim=2, dec_dropout_out=0.5), random_split(20)
    model.train()
    rng = torch.get_rng_state()
    cfg = EvalConfig(iw_samples=10, iw_batch=4, mi_samples=2)
    first = M.evaluate(model, split, cfg, batch_size=6, device=CPU, generator=gen(5))
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert M.evaluate(model, split, cfg, batch_size=6, device=CPU, generator=gen(5)) == first
    assert set(first) == {"nll", "ppl", "neg_elbo", "recon", "kl", "mi", "mi_batch", "au"}
    assert first["neg_elbo"] == pytest.approx(first["recon"] + first["kl"])
    assert set(M.evaluate(model, split, cfg, batch_size=6, device=CPU, iw=False, mi=False)) == {
        "neg_elbo", "recon", "kl"}


def test_posterior_mean_space_of_a_scalar_latent(tmp_path):
    model, split = tiny_model(latent_dim=1), random_split(10)
    mu_theta, mu_phi = M.posterior_mean_space(model, split, batch_size=4, device=CPU, max_sentences=6)
    assert mu_theta.shape == mu_phi.shape == (6,)
    assert np.isfinite(mu_theta).all() and np.abs(mu_theta).max() > 0.05
    mu, _ = M.posteriors(model, split, batch_size=4, device=CPU)
    np.testing.assert_allclose(mu_phi, mu[:6, 0].numpy(), rtol=1e-6)
    plot_posterior_mean_space(mu_theta, mu_phi, tmp_path / "pms.png", title="tiny")
    assert (tmp_path / "pms.png").stat().st_size > 0
    with pytest.raises(ValueError, match="equal length"):
        plot_posterior_mean_space(mu_theta, mu_phi[:3], tmp_path / "bad.png")


def test_posterior_mean_is_the_prior_mean_when_the_decoder_ignores_z():
    model = tiny_model(latent_dim=1)
    dec = model.decoder
    nn.init.zeros_(dec.to_state.weight)  # no bias: c0 = 0 for every z
    with torch.no_grad():
        dec.lstm.weight_ih_l0[:, -1].zero_()  # the z column of the input weights
    mu_theta, _ = M.posterior_mean_space(model, random_split(5), batch_size=5, device=CPU)
    np.testing.assert_allclose(mu_theta, 0, atol=1e-4)


def test_posterior_mean_space_needs_a_scalar_latent():
    with pytest.raises(ValueError, match="latent_dim 1, got latent_dim 2"):
        M.posterior_mean_space(tiny_model(latent_dim=2), random_split(3), batch_size=3, device=CPU)


def test_cosine_similarity():
    assert M.mean_pairwise_cosine(torch.tensor([[1.0, 2.0]]).repeat(4, 1)) == pytest.approx(1)
    assert M.mean_pairwise_cosine(torch.eye(3)) == pytest.approx(0)
    feats = torch.randn(6, 3, generator=gen())
    cos = nn.functional.cosine_similarity(feats.unsqueeze(1), feats.unsqueeze(0), dim=-1)
    brute = (cos.sum() - cos.diagonal().sum()) / 30
    assert M.mean_pairwise_cosine(feats) == pytest.approx(brute.item(), rel=1e-5)
    model, split = tiny_model(latent_dim=2), random_split(12)
    value = M.feature_cosine_similarity(model, split, batch_size=5, device=CPU, max_sentences=7)
    batch = next(split.batches(12, shuffle=False))
    with torch.no_grad():
        feats = model.features(batch.tokens, batch.lengths)[:7]
    assert value == pytest.approx(M.mean_pairwise_cosine(feats), rel=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        M.feature_cosine_similarity(model, split, batch_size=5, device=CPU, max_sentences=1)


def test_bad_input_gets_a_clear_error():
    model = tiny_model(latent_dim=2)
    with pytest.raises(ValueError, match="no sentences"):
        M.evaluate(model, make_split([]), EvalConfig(), batch_size=4, device=CPU)
    with pytest.raises(ValueError, match="must be positive"):
        M.iw_nll(model, random_split(3), samples=10, samples_per_pass=0, batch_size=4, device=CPU)
    with pytest.raises(ValueError, match="at least 2 sentences"):
        M.active_units(model, random_split(1), batch_size=4, device=CPU)


def test_output_layers_have_no_bias_as_the_reference_code():
    vae, lm = tiny_model(latent_dim=2), tiny_model(kind="lm")
    for layer in (vae.encoder.to_posterior, vae.decoder.to_state, vae.decoder.to_vocab, lm.decoder.to_vocab):
        assert layer.bias is None
    assert tiny_model(latent_dim=2, output_bias=True).decoder.to_vocab.bias is not None


def test_scaled_posterior_counts_active_units_on_raw_means():
    # Scale-VAE (Song et al.): AU on the raw means μ; MI under the scaled posterior (footnote 1).
    signs = torch.tensor([1.0, -1.0]).repeat(50).unsqueeze(1)
    mu = signs * torch.tensor([0.05, 0.5])  # raw variances 0.0025 (inactive) and 0.25
    toy = TablePosterior(mu, torch.zeros_like(mu))  # σ = 1: the scaled means separate better
    toy.latent_scale.copy_(torch.tensor([20.0, 1.0]))  # scaled: variances 1.0 and 0.25
    out = M.evaluate(toy, toy.split(), EvalConfig(mi_samples=2), batch_size=16, device=CPU,
                     generator=gen(), iw=False)
    assert out["au"] == 1.0
    assert M.active_units(toy, toy.split(), batch_size=16, device=CPU) == 1
    scaled = M.mutual_info_from(mu * toy.latent_scale, toy.logvar, samples=2, generator=gen())
    raw = M.mutual_info_from(mu, toy.logvar, samples=2, generator=gen())
    assert M.mutual_info(toy, toy.split(), batch_size=16, device=CPU, generator=gen(), samples=2) == \
        pytest.approx(scaled)
    assert scaled > raw + 0.1


def test_perplexity_of_a_hopeless_model_is_infinite_not_an_overflow():
    split = make_split([[4, 5], [6]])  # 5 predicted tokens: the words and </s>
    assert M._ppl(5 * math.log(7.0), split) == pytest.approx(7.0)
    assert M._ppl(5 * 1000.0, split) == math.inf  # e^1000 overflows a float
    assert math.isnan(M._ppl(math.nan, split))


def test_per_batch_mi_is_he_et_als_estimate_bounded_by_log_batch():
    # He et al.'s calc_mi, written out: per batch, the analytic −H[q(z|x)] minus log q(z) of one
    # z per sentence under the batch's mixture; the sentence-weighted mean (a last batch of 2).
    torch.manual_seed(0)
    mu, logvar = torch.randn(10, 3), torch.randn(10, 3) * 0.5
    noise = gen()
    z = [mu[n] + torch.randn((1, 3), generator=noise)[0] * (0.5 * logvar[n]).exp() for n in range(10)]
    expected = 0.0
    for lo, hi in ((0, 8), (8, 10)):
        for n in range(lo, hi):
            neg_entropy = -1.5 * math.log(2 * math.pi) - 0.5 * (1 + logvar[n]).sum().item()
            densities = [math.exp(-0.5 * (((z[n] - mu[m]) ** 2) / logvar[m].exp() + logvar[m] + math.log(2 * math.pi))
                                  .sum().item()) for m in range(lo, hi)]
            expected += neg_entropy - math.log(sum(densities) / (hi - lo))
    assert M.mutual_info_per_batch(mu, logvar, 8, generator=gen()) == pytest.approx(expected / 10, rel=1e-6)
    # Posteriors far apart and narrow: about log(batch size), the estimator's cap, where the whole
    # split's aggregate gives about log(N).
    far, narrow = torch.randn(400, 3) * 30, torch.full((400, 3), -6.0)
    assert M.mutual_info_per_batch(far, narrow, 8, generator=gen()) == pytest.approx(math.log(8), abs=0.1)
    assert M.mutual_info_from(far, narrow, generator=gen()) == pytest.approx(math.log(400), abs=1e-3)
