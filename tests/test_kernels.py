"""The C kernels (models/kernels/): the LSTM recurrence against oneDNN's LSTM, row independence,
the vocabulary layer's log-softmax against torch's, the build and the fallback."""
import pytest
import torch
from torch import nn

from models.kernels import build, lstm as lstm_module, vocab as vocab_module
from models.config import ModelConfig
from models.kernels.lstm import LSTM, kernel
from models import nets
from models.nets import IGNORE, Encoder

needs_kernel = pytest.mark.skipif(kernel() is None, reason="no C compiler to build the LSTM kernel")


def make_lstm(inputs: int, hidden: int, seed: int = 0) -> LSTM:
    torch.manual_seed(seed)
    module = LSTM(inputs, hidden, batch_first=True)
    with torch.no_grad():  # weights of order one, so the gates saturate in places and differ
        for param in module.parameters():
            param.normal_(0, 0.5)
    return module


def run(forward, inputs):
    """forward()'s (states, h_n, c_n) and the gradients of a random projection of them with
    respect to `inputs`."""
    states, (h_n, c_n) = forward()
    torch.manual_seed(1)  # randn, not randn_like: the two lay their outputs out differently
    loss = sum((t * torch.randn(t.shape)).sum() for t in (states, h_n, c_n))
    return [states, h_n, c_n, *torch.autograd.grad(loss, inputs)]


@needs_kernel
@pytest.mark.parametrize("batch,steps,inputs,hidden", [(3, 4, 7, 5), (9, 3, 20, 13), (16, 12, 82, 50), (5, 2, 3, 128)])
def test_kernel_matches_onednn_values_and_gradients(batch, steps, inputs, hidden):
    module = make_lstm(inputs, hidden)
    x = torch.randn(batch, steps, inputs, requires_grad=True)
    h0 = torch.randn(1, batch, hidden, requires_grad=True)
    c0 = torch.randn(1, batch, hidden, requires_grad=True)
    assert module.kernel_applies(x)
    weights = list(module.parameters())
    ours = run(lambda: LSTM.forward(module, x, (h0, c0)), [x, h0, c0, *weights])
    onednn = run(lambda: nn.LSTM.forward(module, x, (h0, c0)), [x, h0, c0, *weights])
    for name, a, b in zip(["states", "h_n", "c_n", "x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"], ours, onednn):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


@needs_kernel
def test_a_rows_values_do_not_depend_on_the_rows_beside_it():
    # Blocks of four rows and the single-row tail share no arithmetic, so row 0 alone, first of
    # a batch of 9, or fifth (inside a block) comes out bit for bit the same.
    module = make_lstm(11, 21)
    rows = torch.randn(9, 6, 11)
    with torch.no_grad():
        alone = module(rows[:1])[0][0]
        first = module(rows)[0][0]
        fifth = module(torch.cat([rows[1:5], rows[:1], rows[5:]]))[0][4]
    assert torch.equal(alone, first) and torch.equal(alone, fifth)


@needs_kernel
@pytest.mark.parametrize("pooling", ["last", "mean", "absmax"])
def test_an_encoder_over_mixed_lengths_matches_the_packed_path(pooling, monkeypatch):
    torch.manual_seed(0)
    encoder = Encoder(vocab_size=30, cfg=ModelConfig(enc_emb_dim=6, enc_hidden=9, latent_dim=2, pooling=pooling))
    tokens = torch.randint(3, 30, (5, 8))
    lengths = torch.tensor([8, 3, 5, 8, 2])
    tokens[torch.arange(8) >= lengths.unsqueeze(1)] = 0
    assert encoder.lstm.kernel_applies(encoder.embed(tokens))
    unpacked = encoder.features(tokens, lengths)
    monkeypatch.setattr(LSTM, "kernel_applies", lambda self, x: False)
    torch.testing.assert_close(unpacked, encoder.features(tokens, lengths), rtol=1e-5, atol=1e-6)


@needs_kernel
def test_an_input_repeated_at_every_step_has_onednns_values_and_gradients():
    # [x_t; v] at every step, v projected once per row: as oneDNN on the concatenated input.
    module = make_lstm(9, 13)
    x, v = torch.randn(6, 5, 7, requires_grad=True), torch.randn(6, 2, requires_grad=True)
    h0, c0 = torch.randn(1, 6, 13, requires_grad=True), torch.randn(1, 6, 13, requires_grad=True)
    inputs = [x, v, h0, c0, *module.parameters()]
    ours = run(lambda: module.forward_repeated(x, v, (h0, c0)), inputs)
    onednn = run(lambda: nn.LSTM.forward(module, torch.cat([x, v.unsqueeze(1).expand(-1, 5, -1)], -1), (h0, c0)),
                 inputs)
    for name, a, b in zip(["states", "h_n", "c_n", "x", "v", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"], ours, onednn):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


@needs_kernel
def test_shared_input_projections_give_the_plain_recurrence():
    # 3 sentences × 4 samples; the words (3, T, 6) shared by each sentence's samples, z (12, 2).
    module = make_lstm(8, 13)
    words, z = torch.randn(3, 5, 6), torch.randn(12, 2)
    h0, c0 = torch.randn(1, 12, 13), torch.randn(1, 12, 13)
    inputs = torch.cat([words.repeat_interleave(4, 0), z.unsqueeze(1).expand(-1, 5, -1)], -1)
    with torch.no_grad():
        plain = nn.LSTM.forward(module, inputs, (h0, c0))[0]
        shared = module.share_inputs(words, z, samples=4)
        whole = module.forward_shared(shared, 0, 12, (h0, c0))
        # Rows 5 .. 10 alone (a pass starting inside a sentence's samples): bit for bit the same.
        part = module.forward_shared(shared, 5, 11, (h0[:, 5:11], c0[:, 5:11]))
    torch.testing.assert_close(whole, plain, rtol=1e-5, atol=1e-6)
    assert torch.equal(part, whole[5:11])
    # Training's path sums in the same order: what evaluation scores is what training computed.
    training = module.forward_repeated(words.repeat_interleave(4, 0), z.requires_grad_(), (h0, c0))[0]
    assert training.requires_grad and torch.equal(training.detach(), whole)
    assert module.share_inputs(words.requires_grad_(), z, samples=4) is None  # gradients: the plain path


@pytest.mark.skipif(vocab_module._library() is None, reason="no C compiler to build the kernel")
@pytest.mark.parametrize("bias", [True, False])
def test_the_vocabulary_kernel_matches_torch(bias, monkeypatch):
    # 1,100 words: two full chunks of logits and a short one, with a later chunk's maximum above
    # an earlier one's; 23 rows: blocks of six and a tail of single rows.
    torch.manual_seed(0)
    layer = nn.Linear(6, 1100, bias=bias)
    hidden = torch.randn(23, 6) * 3
    targets = torch.randint(0, 1100, (23,))
    targets[[4, 17]] = IGNORE
    with torch.no_grad():
        layer.weight[1050] *= 4
        ours = nets._target_log_probs(hidden, targets, layer, None)
        alone = nets._target_log_probs(hidden[3:4], targets[3:4], layer, None)  # inside a block of six
        monkeypatch.setattr(vocab_module, "kernel", lambda t: None)
        theirs = nets._target_log_probs(hidden, targets, layer, torch.empty(2, 10, 1100))
    assert ours[4] == 0.0 and ours[17] == 0.0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert torch.equal(alone, ours[3:4])  # a row's value does not depend on the rows beside it


@needs_kernel
def test_loading_the_kernel_keeps_denormals():
    # -ffast-math in a shared object's link would make the whole process flush them to zero.
    assert kernel() is not None
    assert (torch.tensor([1e-40]) * 1.0).item() != 0.0


@pytest.fixture
def fresh_kernel(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    caches = (lstm_module.kernel, build.library)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


@pytest.mark.parametrize("env,warning", [({"CC": "/nonexistent/cc"}, "could not build"),
                                         ({"MODELS_NATIVE": "off"}, None)])
def test_without_the_kernel_the_module_is_nn_lstm(fresh_kernel, monkeypatch, env, warning):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if warning:
        with pytest.warns(UserWarning, match=warning):
            assert kernel() is None
    else:
        assert kernel() is None
    module = make_lstm(4, 3)
    x = torch.randn(2, 5, 4)
    assert not module.kernel_applies(x)
    assert torch.equal(module(x)[0], nn.LSTM.forward(module, x)[0])


def test_the_kernel_builds_into_the_cache_once(fresh_kernel, tmp_path):
    if kernel() is None:
        pytest.skip("no C compiler")
    built = list((tmp_path / "vae-collapse-sweeps").glob("lstm-*.so"))
    assert len(built) == 1
    build.library.cache_clear()
    stamp = built[0].stat().st_mtime_ns
    assert build.library("lstm") is not None and built[0].stat().st_mtime_ns == stamp
