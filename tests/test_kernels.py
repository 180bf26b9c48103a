"""The C kernels (models/kernels/), built for every target this machine can run (x86-64-v2 and
up to its own, `native`): the same bits on every target, each promise bit for bit on each, the
values against torch's, the accuracy of their exp, tanh, σ and log, the choice and its fallback."""
import ctypes
import typing

import numpy as np
import pytest
import torch
from torch import nn

import models
from models.config import ModelConfig
from models.resolve import parse_config
from models.kernels import build, choice, lstm as lstm_module, vocab as vocab_module
from models.kernels.choice import Kernels, KernelsError
from models.kernels.lstm import LSTM
from models.loop import Loop
from models import metrics, nets
from models.nets import IGNORE, Encoder
from tests.helpers import tiny_config

TARGETS = build.targets_here() if build.compiler() else []
TORCH = Kernels(None, "tests")
needs_kernel = pytest.mark.skipif(not TARGETS, reason="no C compiler to build the kernels")
TESTED_TARGETS: set[str] = set()
"""The targets whose builds ran here, printed at the end of the run (tests/conftest.py)."""


@pytest.fixture(params=TARGETS)
def kernels(request) -> Kernels:
    """The C kernels built for one target this machine runs."""
    for name in choice.LIBRARIES:
        build.library(name, request.param)
    TESTED_TARGETS.add(request.param if request.param != "native" else f"native ({build.native_arch()})")
    return Kernels(request.param)


def make_lstm(inputs: int, hidden: int, kernels: Kernels, seed: int = 0) -> LSTM:
    torch.manual_seed(seed)
    module = LSTM(inputs, hidden, batch_first=True, kernels=kernels)
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


@pytest.mark.parametrize("batch,steps,inputs,hidden", [(3, 4, 7, 5), (9, 3, 20, 13), (16, 12, 82, 50), (5, 2, 3, 128)])
def test_kernel_matches_onednn_values_and_gradients(kernels, batch, steps, inputs, hidden):
    module = make_lstm(inputs, hidden, kernels)
    x = torch.randn(batch, steps, inputs, requires_grad=True)
    h0 = torch.randn(1, batch, hidden, requires_grad=True)
    c0 = torch.randn(1, batch, hidden, requires_grad=True)
    assert module.kernel_applies(x)
    weights = list(module.parameters())
    ours = run(lambda: LSTM.forward(module, x, (h0, c0)), [x, h0, c0, *weights])
    onednn = run(lambda: nn.LSTM.forward(module, x, (h0, c0)), [x, h0, c0, *weights])
    for name, a, b in zip(["states", "h_n", "c_n", "x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"], ours, onednn):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_an_input_repeated_at_every_step_has_onednns_values_and_gradients(kernels):
    # [x_t; v] at every step, v projected once per row: as oneDNN on the concatenated input.
    module = make_lstm(9, 13, kernels)
    x, v = torch.randn(6, 5, 7, requires_grad=True), torch.randn(6, 2, requires_grad=True)
    h0, c0 = torch.randn(1, 6, 13, requires_grad=True), torch.randn(1, 6, 13, requires_grad=True)
    inputs = [x, v, h0, c0, *module.parameters()]
    ours = run(lambda: module.forward_repeated(x, v, (h0, c0)), inputs)
    onednn = run(lambda: nn.LSTM.forward(module, torch.cat([x, v.unsqueeze(1).expand(-1, 5, -1)], -1), (h0, c0)),
                 inputs)
    for name, a, b in zip(["states", "h_n", "c_n", "x", "v", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"], ours, onednn):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_a_rows_values_do_not_depend_on_the_rows_beside_it(kernels):
    # Blocks of four rows and the single-row tail share no arithmetic, so row 0 alone, first of
    # a batch of 9, or fifth (inside a block) comes out bit for bit the same.
    module = make_lstm(11, 21, kernels)
    rows = torch.randn(9, 6, 11)
    with torch.no_grad():
        alone = module(rows[:1])[0][0]
        first = module(rows)[0][0]
        fifth = module(torch.cat([rows[1:5], rows[:1], rows[5:]]))[0][4]
    assert torch.equal(alone, first) and torch.equal(alone, fifth)


def shared_and_plain(kernels: Kernels):
    """3 sentences × 4 samples, the words (3, T, 6) shared by each sentence's samples, z (12, 2):
    the plain recurrence (oneDNN's), the shared path's whole and rows 5 .. 10, and training's."""
    module = make_lstm(8, 13, kernels)
    words, z = torch.randn(3, 5, 6), torch.randn(12, 2)
    h0, c0 = torch.randn(1, 12, 13), torch.randn(1, 12, 13)
    inputs = torch.cat([words.repeat_interleave(4, 0), z.unsqueeze(1).expand(-1, 5, -1)], -1)
    with torch.no_grad():
        plain = nn.LSTM.forward(module, inputs, (h0, c0))[0]
        shared = module.share_inputs(words, z, samples=4)
        whole = module.forward_shared(shared, 0, 12, (h0, c0))
        part = module.forward_shared(shared, 5, 11, (h0[:, 5:11], c0[:, 5:11]))
    training = module.forward_repeated(words.repeat_interleave(4, 0), z.clone().requires_grad_(), (h0, c0))[0]
    assert module.share_inputs(words.requires_grad_(), z, samples=4) is None  # gradients: the plain path
    return plain, whole, part, training


def test_shared_input_projections_give_the_plain_recurrence(kernels):
    plain, whole, part, training = shared_and_plain(kernels)
    torch.testing.assert_close(whole, plain, rtol=1e-5, atol=1e-6)
    assert torch.equal(part, whole[5:11])  # a pass starting inside a sentence's samples
    # Training's path sums in the same order: what evaluation scores is what training computed.
    assert training.requires_grad and torch.equal(training.detach(), whole)


def vocabulary_case(bias: bool):
    """1,100 words: two full chunks of logits and a short one, with a later chunk's maximum above
    an earlier one's; 23 rows: blocks of six and a tail of single rows; two ignored targets."""
    torch.manual_seed(0)
    layer = nn.Linear(6, 1100, bias=bias)
    hidden = torch.randn(23, 6) * 3
    targets = torch.randint(0, 1100, (23,))
    targets[[4, 17]] = IGNORE
    with torch.no_grad():
        layer.weight[1050] *= 4
    return layer, hidden, targets


@pytest.mark.parametrize("bias", [True, False])
def test_the_vocabulary_kernel_matches_torch(kernels, bias):
    layer, hidden, targets = vocabulary_case(bias)
    with torch.no_grad():
        ours = nets._target_log_probs(hidden, targets, layer, None, kernels)
        alone = nets._target_log_probs(hidden[3:4], targets[3:4], layer, None, kernels)  # inside a block of six
        theirs = nets._target_log_probs(hidden, targets, layer, torch.empty(2, 10, 1100), TORCH)
    assert ours[4] == 0.0 and ours[17] == 0.0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert torch.equal(alone, ours[3:4])  # a row's value does not depend on the rows beside it


ARITH = {0: ("exp", np.exp, 1.0), 1: ("tanh", np.tanh, 1.5), 2: ("sigmoid", lambda x: 1 / (1 + np.exp(-x)), 2.5),
         3: ("log", np.log, 1.0)}
"""arith_apply's functions: name, float64 reference and the largest error allowed in ulp
(arith.h's claims; torch's own sigmoid is 2.2 ulp off at places of this grid)."""


def arith(kernels: Kernels, f: int, x: np.ndarray) -> np.ndarray:
    lib = lstm_module.kernel(kernels.target)
    lib.arith_apply.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    y = np.empty_like(x)
    lib.arith_apply(f, len(x), x.ctypes.data, y.ctypes.data)
    return y


def arith_inputs(f: int) -> np.ndarray:
    if f == 3:
        return np.concatenate([np.linspace(1, 1e4, 200_001), np.logspace(-37, 37, 20_000)]).astype(np.float32)
    dense = np.linspace(-3, 3, 200_001)
    return np.concatenate([np.linspace(-87, 88, 200_001), dense, np.logspace(-30, 1.9, 20_000),
                           -np.logspace(-30, 1.9, 20_000)]).astype(np.float32)


@needs_kernel
@pytest.mark.parametrize("f", list(ARITH))
def test_the_kernels_elementary_functions_are_accurate(f):
    name, reference, allowed = ARITH[f]
    x = arith_inputs(f)
    exact = reference(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    errors = np.abs(arith(Kernels("native"), f, x).astype(np.float64) - exact) / ulp
    assert errors.max() <= allowed, f"{name}: {errors.max():.2f} ulp at x = {x[errors.argmax()]}"


@needs_kernel
def test_exp_saturates_as_documented():
    x = np.array([-1e30, -87.5, 88.5, 1e30, 0.0], dtype=np.float32)
    assert arith(Kernels("native"), 0, x).tolist() == [0.0, 0.0, np.inf, np.inf, 1.0]
    assert arith(Kernels("native"), 1, np.array([-1e30, 1e30, 0.0], dtype=np.float32)).tolist() == [-1.0, 1.0, 0.0]


def every_kernel_output(kernels: Kernels) -> list[torch.Tensor]:
    """One run of each kernel entry point on fixed inputs: forward and gradients, the repeated
    input, the shared path, the vocabulary layer and the elementary functions."""
    module = make_lstm(9, 21, kernels)
    x, v = torch.randn(7, 5, 7, requires_grad=True), torch.randn(7, 2, requires_grad=True)
    h0, c0 = torch.randn(1, 7, 21, requires_grad=True), torch.randn(1, 7, 21, requires_grad=True)
    outputs = run(lambda: module.forward_repeated(x, v, (h0, c0)), [x, v, h0, c0, *module.parameters()])
    outputs += [*shared_and_plain(kernels)[1:3]]
    layer, hidden, targets = vocabulary_case(bias=True)
    with torch.no_grad():
        outputs.append(nets._target_log_probs(hidden, targets, layer, None, kernels))
    outputs += [torch.from_numpy(arith(kernels, f, arith_inputs(f))) for f in ARITH]
    return outputs


@pytest.mark.skipif(len(TARGETS) < 2, reason="one build target here")
def test_every_target_computes_the_same_bits():
    # The promise of models/kernels: no contraction, no reassociation, our own exp, tanh and
    # log, so the instruction set (vector width, FMA or not) changes no bit.
    runs = {target: every_kernel_output(Kernels(target)) for target in TARGETS}
    TESTED_TARGETS.update(t if t != "native" else f"native ({build.native_arch()})" for t in TARGETS)
    first, *others = TARGETS
    for target in others:
        for i, (a, b) in enumerate(zip(runs[first], runs[target])):
            assert torch.equal(a, b), f"output {i}: {first} and {target} differ by {(a - b).abs().max().item():.3g}"


@needs_kernel
@pytest.mark.parametrize("pooling", ["last", "mean", "absmax"])
def test_an_encoder_over_mixed_lengths_matches_the_packed_path(pooling):
    torch.manual_seed(0)
    encoder = Encoder(vocab_size=30, cfg=ModelConfig(enc_emb_dim=6, enc_hidden=9, latent_dim=2, pooling=pooling,
                                                     kernels="native"))
    tokens = torch.randint(3, 30, (5, 8))
    lengths = torch.tensor([8, 3, 5, 8, 2])
    tokens[torch.arange(8) >= lengths.unsqueeze(1)] = 0
    assert encoder.lstm.kernel_applies(encoder.embed(tokens))
    unpacked = encoder.features(tokens, lengths)
    encoder.lstm.kernels = TORCH
    torch.testing.assert_close(unpacked, encoder.features(tokens, lengths), rtol=1e-5, atol=1e-6)


@needs_kernel
def test_loading_the_kernel_keeps_denormals():
    # -ffast-math in a shared object's link would make the whole process flush them to zero.
    for target in TARGETS:
        lstm_module.kernel(target)
    assert (torch.tensor([1e-40]) * 1.0).item() != 0.0


def kernels_of(model: nn.Module, kernels: Kernels) -> None:
    """Switch every kernel user of `model` to `kernels`."""
    for module in model.modules():
        if hasattr(module, "kernels"):
            module.kernels = kernels


@needs_kernel
def test_the_torch_path_agrees_with_the_kernels_to_the_stated_tolerance(tmp_path):
    # models/kernels/__init__.py states it: an update's loss to 1e-6 and its gradient to 1e-4 of
    # its norm, a model's IW-NLL to 1e-5, a short training (dropout on, SGD at lr 0.1) to 1e-4.
    loop = Loop(parse_config(tiny_config(tmp_path, model={"kernels": "native", "enc_hidden": 16, "dec_hidden": 16})))
    batch = next(loop.shuffled())
    step = {}
    for kernels in (Kernels("native"), TORCH):
        kernels_of(loop.model, kernels)
        torch.manual_seed(0)  # the same dropout masks and z noise
        loss = loop.compute_loss(batch)["loss"]
        step[kernels.active] = [loss.detach(), *torch.autograd.grad(loss, list(loop.model.parameters()))]
        step[kernels.active + 2] = metrics.iw_nll(loop.model, loop.corpus.test, samples=100, samples_per_pass=50,
                                                  batch_size=32, device=loop.device)["nll"]
    torch.testing.assert_close(step[True][0], step[False][0], rtol=1e-6, atol=0)
    ours, theirs = (torch.cat([g.flatten() for g in step[path][1:]]) for path in (True, False))
    assert (ours - theirs).norm() <= 1e-4 * theirs.norm()
    assert step[3] == pytest.approx(step[2], rel=1e-5)
    runs = [models.train(tiny_config(tmp_path, model={"kernels": name}, train={"lr": 0.1, "max_epochs": 3}))
            for name in ("native", "torch")]
    for ours, theirs in zip(*(run["history"] for run in runs)):
        for key in ("train/loss", "val/neg_elbo"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4), key
    assert runs[0]["test"]["nll"] == pytest.approx(runs[1]["test"]["nll"], rel=1e-4)


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    caches = (lstm_module.kernel, vocab_module.library, build.library, choice.resolve)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


def test_without_a_compiler_auto_falls_back_to_nn_lstm_and_says_so(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.warns(UserWarning, match="could not build lstm.c"):
        kernels = choice.resolve("auto")
    assert not kernels.active and "could not build" in kernels.describe()
    module = make_lstm(4, 3, kernels)
    x = torch.randn(2, 5, 4)
    assert not module.kernel_applies(x)
    assert torch.equal(module(x)[0], nn.LSTM.forward(module, x)[0])
    with pytest.raises(KernelsError, match="model.kernels: native: could not build"):
        choice.resolve("native")


@pytest.mark.parametrize("value,expected", [("off", None), ("torch", None), ("native", "native")])
def test_the_environment_overrides_the_config(fresh_build, monkeypatch, value, expected):
    if expected and not TARGETS:
        pytest.skip("no C compiler")
    monkeypatch.setenv(choice.ENVIRONMENT, value)
    kernels = choice.resolve("torch" if expected else "auto")
    assert kernels.target == expected
    if expected is None:
        assert kernels.describe() == f"torch ({choice.ENVIRONMENT}={value})"


def test_a_choice_that_cannot_be_honoured_is_refused_with_its_reason(fresh_build, monkeypatch):
    monkeypatch.setenv(choice.ENVIRONMENT, "fast")
    with pytest.raises(KernelsError, match="MODELS_NATIVE=fast: not one of off, auto"):
        choice.resolve("auto")
    monkeypatch.delenv(choice.ENVIRONMENT)
    foreign = next(t for arch, targets in build.PORTABLE_TARGETS.items() if arch != build.machine() for t in targets)
    with pytest.raises(KernelsError, match=f"cannot run code built for {foreign}"):
        choice.resolve(foreign)


def test_the_configs_choices_are_the_kernels():
    assert set(typing.get_args(typing.get_type_hints(ModelConfig)["kernels"])) == set(choice.CHOICES)


def test_the_kernel_builds_into_the_cache_once(fresh_build, tmp_path):
    if not TARGETS:
        pytest.skip("no C compiler")
    build.library("lstm", "native")
    built = list((tmp_path / "vae-collapse-sweeps").glob("lstm-native-*.so"))
    assert len(built) == 1
    build.library.cache_clear()
    stamp = built[0].stat().st_mtime_ns
    assert build.library("lstm", "native") is not None and built[0].stat().st_mtime_ns == stamp
