"""Pooling encoders (Long et al. §3.2): pooled values with padding, and padding-independence."""
import pytest
import torch

from models.config import ModelConfig
from models.data import PAD
from models.nets import Encoder, pool_states

# Two sequences, H = 2: the first of length 3, the second of length 1 followed by
# padding positions holding large values that must never be picked.
STATES = torch.tensor([[[1.0, -4.0], [3.0, 2.0], [-5.0, 1.0]],
                       [[2.0, -1.0], [100.0, -100.0], [-100.0, 100.0]]])
MASK = torch.tensor([[True, True, True], [True, False, False]])


@pytest.mark.parametrize("kind,expected", [
    ("mean", [[-1 / 3, -1 / 3], [2.0, -1.0]]),
    ("max", [[3.0, 2.0], [2.0, -1.0]]),
    # The value of largest magnitude per unit, its sign kept.
    ("absmax", [[-5.0, -4.0], [2.0, -1.0]]),
])
def test_pool_states_ignores_padding(kind, expected):
    assert torch.allclose(pool_states(STATES, MASK, kind), torch.tensor(expected))


def test_pool_states_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown pooling 'median'"):
        pool_states(STATES, MASK, "median")


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "absmax"])
def test_padding_never_changes_a_sentence_features(pooling):
    torch.manual_seed(0)
    cfg = ModelConfig(enc_emb_dim=6, enc_hidden=5, latent_dim=2, pooling=pooling)
    encoder = Encoder(vocab_size=20, cfg=cfg).eval()
    with torch.no_grad():  # default-scale weights, so features are far from zero and differ
        for param in encoder.parameters():
            param.normal_()
    short = torch.tensor([[1, 7, 8, 2]])
    longer = torch.tensor([[1, 9, 10, 11, 12, 13, 2]])
    batch = torch.full((2, 7), PAD)
    batch[0, :4], batch[1] = short[0], longer[0]
    alone = encoder.features(short, torch.tensor([4]))
    together = encoder.features(batch, torch.tensor([4, 7]))
    assert torch.allclose(alone[0], together[0], atol=1e-6)
    assert not torch.allclose(together[0], together[1], atol=1e-3)
    # The posterior too, through the rest of the encoder.
    assert torch.allclose(encoder(short, torch.tensor([4]))[0][0],
                          encoder(batch, torch.tensor([4, 7]))[0][0], atol=1e-6)
