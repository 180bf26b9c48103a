import pytest
import torch

from models.config import KLConfig

from models.resolve import parse_config
from models.kl import kl_per_dim, kl_term, kl_weight


def kl_cfg(**kw):
    return parse_config({"kl": kw}).kl


def test_constant_weight_is_beta():
    assert kl_weight(kl_cfg(weight=0.2), 1234, 100, 10_000) == 0.2


def test_linear_warmup_by_epochs():
    # He et al. App. B: 0.1 → 1 over 10 epochs, per iteration.
    cfg = kl_cfg(anneal="linear", start=0.1, epochs=10)
    assert kl_weight(cfg, 0, 100, 5000) == pytest.approx(0.1)
    assert kl_weight(cfg, 500, 100, 5000) == pytest.approx(0.55)
    assert kl_weight(cfg, 1000, 100, 5000) == pytest.approx(1.0)
    assert kl_weight(cfg, 4000, 100, 5000) == pytest.approx(1.0)


def test_linear_warmup_by_steps_and_to_beta():
    cfg = kl_cfg(anneal="linear", start=0.0, steps=200, weight=0.5)
    assert kl_weight(cfg, 100, 7, 1000) == pytest.approx(0.25)
    assert kl_weight(cfg, 300, 7, 1000) == pytest.approx(0.5)


def test_cyclical_schedule():
    cfg = kl_cfg(anneal="cyclical", cycles=4, rise=0.5)
    total = 400  # 4 cycles of 100 steps, rising over the first 50
    assert kl_weight(cfg, 0, 10, total) == 0.0
    assert kl_weight(cfg, 25, 10, total) == pytest.approx(0.5)
    assert kl_weight(cfg, 60, 10, total) == 1.0
    assert kl_weight(cfg, 100, 10, total) == 0.0
    assert kl_weight(cfg, 325, 10, total) == pytest.approx(0.5)


def _kl_grads(cfg: KLConfig, mu):
    mu = mu.clone().requires_grad_(True)
    logvar = torch.zeros_like(mu)
    kl_term(cfg, kl_per_dim(mu, logvar)).sum().backward()
    return mu.grad


def test_free_bits_per_dimension_blocks_gradient_under_threshold():
    # λ = 2 nats over 4 dims → 0.5 per dimension (Li et al. Eq. 1, λ_i = λ / D).
    cfg = kl_cfg(free_bits={"kind": "fb", "lam": 2.0})
    mu = torch.tensor([[0.1, 2.0, 0.5, 1.5]])  # KL_i = μ²/2: 0.005, 2, 0.125, 1.125
    grad = _kl_grads(cfg, mu)
    assert grad[0, 0] == 0 and grad[0, 2] == 0
    assert grad[0, 1] == pytest.approx(2.0) and grad[0, 3] == pytest.approx(1.5)
    value = kl_term(cfg, kl_per_dim(mu, torch.zeros_like(mu)))
    assert value.item() == pytest.approx(0.5 + 2 + 0.5 + 1.125)


def test_free_bits_on_total_kl():
    cfg = kl_cfg(free_bits={"kind": "fbp", "lam": 3.0})
    under = torch.tensor([[1.0, 1.0]])  # total KL 1 < 3: no gradient
    over = torch.tensor([[2.0, 1.0]])   # total KL 2.5 < 3 still
    far = torch.tensor([[2.0, 2.0]])    # total KL 4 > 3: full gradient
    assert torch.all(_kl_grads(cfg, under) == 0)
    assert torch.all(_kl_grads(cfg, over) == 0)
    assert torch.allclose(_kl_grads(cfg, far), far)


def test_kl_per_dim_matches_torch_distributions():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    assert torch.allclose(kl_per_dim(mu, logvar), torch.distributions.kl_divergence(q, p), atol=1e-5)
