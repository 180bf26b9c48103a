"""Text from a trained model: sentences decoded from the prior, and reconstructions.

The quickest evidence a person trusts (He et al.'s code prints both): a working VAE's
reconstructions follow their input, while a collapsed VAE's decoder ignores z and gives
much the same sentence for every input. Decoding runs the decoder as it was trained (z as
its initial state and beside every word). A z from the prior is z ~ N(0, I) times
`latent_scale`, the factor f that Scale-VAE's decoder sees (Song et al. §3.1; ones for every
other method); a reconstruction decodes the posterior mean as the decoder sees it, f·μ.
"""
from __future__ import annotations

import torch

from models.data import BOS, EOS, PAD, Split, Vocab
from models.files import RECONSTRUCTIONS, SAMPLES
from models.nets import evaluating

MAX_WORDS = 100
"""Words decoded before a sentence that has not ended is cut."""


def decode(model, z: torch.Tensor | None, count: int = 0, greedy: bool = True,
           generator: torch.Generator | None = None, max_words: int = MAX_WORDS) -> list[list[int]]:
    """Word ids (no <s>, no </s>) of one sentence per row of z (N, D); for the language model
    (no latent) z is None and `count` sentences are decoded. Greedy takes the most probable
    word at each step; otherwise each word is drawn from p(w | words so far, z) with `generator`
    (a CPU generator)."""
    device = next(model.parameters()).device
    n = count if z is None else z.size(0)
    words = torch.full((n,), BOS, dtype=torch.long, device=device)
    sentences: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    state = None
    with evaluating(model):
        for _ in range(max_words):
            logits, state = model.decoder.step(words, z, state)  # (N, V)
            logits[:, [PAD, BOS]] = -torch.inf  # never a next word in training: no probability learnt
            if greedy:
                words = logits.argmax(-1)
            else:
                probs = torch.softmax(logits.float(), -1).cpu()
                words = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(device)
            for i, word in enumerate(words.tolist()):
                if not done[i]:
                    done[i] = word == EOS
                    if not done[i]:
                        sentences[i].append(word)
            if all(done):
                break
    return sentences


def prior_z(model, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(count, D) z ~ N(0, I) times the latent scale f: the prior as the decoder sees it."""
    scale = model.latent_scale
    return torch.randn(count, scale.numel(), generator=generator).to(scale.device) * scale


def reconstruct(model, tokens: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Greedy decoding of each sentence's posterior mean f·μ: tokens (B, T), lengths (B,)."""
    with evaluating(model):
        mu, _ = model.encode(tokens, lengths)
    return decode(model, mu * model.latent_scale)


def samples_text(model, vocab: Vocab, count: int = SAMPLES, seed: int = 0) -> str:
    """samples.txt: for each of `count` prior draws, its greedy decoding and one sampled sentence
    (both drawn with a generator seeded SEED, so a file is reproducible)."""
    generator = torch.Generator().manual_seed(seed)
    z = prior_z(model, count, generator) if model.is_vae else None
    source = ("z ~ N(0, I) times the latent scale f (Scale-VAE's factor; 1 otherwise)" if model.is_vae
              else "the language model (no latent: every greedy line is the same)")
    greedy = decode(model, z, count)
    sampled = decode(model, z, count, greedy=False, generator=generator)
    lines = [f"# {count} sentences from {source}: for each, the greedy decoding, then one sampled from p(x|z)"]
    for i, (best, drawn) in enumerate(zip(greedy, sampled), 1):
        lines += [f"{i:>3} greedy   {_text(vocab, best)}", f"    sampled  {_text(vocab, drawn)}"]
    return "\n".join(lines) + "\n"


def reconstructions_text(model, split: Split, vocab: Vocab, count: int = RECONSTRUCTIONS) -> str:
    """reconstructions.txt: the split's first `count` sentences, each above its reconstruction.

    The header counts distinct reconstructions: one or two for a collapsed model, about
    `count` for one whose decoder uses z."""
    head = split.head(count)
    batch = next(head.batches(head.num_sentences, shuffle=False))  # one batch, sorted by length
    order = batch.index.argsort()  # back to the split's order
    tokens, lengths = batch.tokens[order], batch.lengths[order]
    device = next(model.parameters()).device
    outputs = reconstruct(model, tokens.to(device), lengths.to(device))
    inputs = [row[1:n - 1].tolist() for row, n in zip(tokens, lengths.tolist())]
    exact = sum(a == b for a, b in zip(inputs, outputs))
    lines = [f"# the first {len(inputs)} sentences of {split.source}, each above its greedy reconstruction from "
             f"the posterior mean f·μ", f"# distinct reconstructions: {len({tuple(o) for o in outputs})} of "
             f"{len(inputs)}; exact: {exact} of {len(inputs)}"]
    for i, (source, output) in enumerate(zip(inputs, outputs), 1):
        lines += [f"{i:>3} input  {_text(vocab, source)}", f"    recon  {_text(vocab, output)}"]
    return "\n".join(lines) + "\n"


def _text(vocab: Vocab, ids: list[int]) -> str:
    return " ".join(vocab.decode(ids)) or "(empty)"
