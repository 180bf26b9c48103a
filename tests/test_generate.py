"""Decoding text from a model, and the model file: units on tiny real models, one tiny training."""
from pathlib import Path

import pytest
import torch

import models
from models.data import EOS, Vocab
from models.generate import decode, prior_z, reconstructions_text, samples_text
from models.loop import Loop
from models.saved import ModelFileError, init_weights, load_model, save_model
from tests.helpers import tiny_config
from tests.test_metrics import VOCAB, random_split, tiny_model

FIXTURES = Path(__file__).parent / "fixtures"
WORDS = Vocab(f"w{k}" for k in range(VOCAB - 4))


def ignoring_z(model):
    """Cut every path from z into the decoder: its initial state and its inputs."""
    with torch.no_grad():
        model.decoder.to_state.weight.zero_()
        model.decoder.lstm.weight_ih_l0[:, model.decoder.embed.embedding_dim:].zero_()
    return model


def test_greedy_decoding_is_deterministic_and_sampling_follows_its_generator():
    model, z = tiny_model(latent_dim=2), torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    assert decode(model, z) == decode(model, z)
    drawn = [decode(model, z, greedy=False, generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert drawn[0] == drawn[1] != drawn[2]
    assert all(EOS not in s and len(s) <= 100 for s in drawn[0])
    lm = tiny_model(kind="lm")
    assert len(decode(lm, None, count=3)) == 3  # no latent: count sentences


def test_a_decoder_that_ignores_z_reconstructs_every_input_alike():
    split = random_split(12, max_len=6)
    ignored = reconstructions_text(ignoring_z(tiny_model(latent_dim=2)), split, WORDS, count=12)
    assert "distinct reconstructions: 1 of 12" in ignored
    # The same decoder with its paths from z decodes different z differently.
    z = 3 * torch.randn(12, 2, generator=torch.Generator().manual_seed(1))
    assert len({tuple(s) for s in decode(tiny_model(latent_dim=2), z)}) > 1
    # The inputs are the split's first sentences, in its order.
    inputs = [line.split(None, 2)[2] for line in ignored.splitlines() if " input " in line]
    assert inputs == [" ".join(WORDS.decode(split.sentence(i))) for i in range(12)]


def test_prior_samples_are_scaled_by_the_latent_scale():
    model = tiny_model(latent_dim=2)
    model.latent_scale.copy_(torch.tensor([2.0, 0.5]))
    z = prior_z(model, 4, torch.Generator().manual_seed(0))
    assert torch.equal(z, torch.randn(4, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([2.0, 0.5]))
    text = samples_text(model, WORDS, count=3, seed=0)
    lines = text.splitlines()[1:]
    assert [line.split()[1] for line in lines[::2]] == ["greedy"] * 3 and all("<s>" not in line for line in lines)
    assert [line.split()[0] for line in lines[1::2]] == ["sampled"] * 3


def test_train_writes_a_model_file_that_evaluates_to_the_trials_test_metrics(tmp_path):
    out = tmp_path / "out"
    result = models.train(tiny_config(tmp_path, train={"max_epochs": 1}), out_dir=str(out))
    for name in (models.MODEL_FILE, models.SAMPLES_FILE, models.RECONSTRUCTIONS_FILE):
        assert (out / name).stat().st_size > 0
    loaded = load_model(str(out / models.MODEL_FILE))
    assert len(loaded.vocab) == 1004 and loaded.config.model.latent_dim == 2 and not loaded.model.training
    # The same weights and the same evaluation noise as the trial's own test.
    assert models.evaluate_model(str(out / models.MODEL_FILE)) == result["test"]


def test_init_from_needs_the_models_vocabulary_and_architecture(tmp_path):
    loop = Loop(models.parse_config(tiny_config(tmp_path)))
    path = str(tmp_path / "model.pt")
    save_model(loop, path)
    other = Loop(models.parse_config(tiny_config(tmp_path, seed=5)))
    init_weights(other, path)
    assert all(torch.equal(a, b) for a, b in zip(loop.model.state_dict().values(), other.model.state_dict().values()))
    line_corpus = Loop(models.parse_config(tiny_config(tmp_path, data={"name": str(FIXTURES / "tiny")})))
    with pytest.raises(ModelFileError, match="vocabulary"):
        init_weights(line_corpus, path)
    wider = Loop(models.parse_config(tiny_config(tmp_path, model={"dec_hidden": 9})))
    with pytest.raises(ModelFileError, match="do not fit this model"):
        init_weights(wider, path)
    with pytest.raises(ModelFileError, match="above the 0 MiB limit"):
        save_model(loop, str(tmp_path / "big.pt"), limit=1000)
    loop.save(str(tmp_path / "checkpoint.pt"))
    for bad, message in ((tmp_path / "checkpoint.pt", "not a model file"), (tmp_path / "none.pt", "not found")):
        with pytest.raises(ModelFileError, match=message):
            load_model(str(bad))
