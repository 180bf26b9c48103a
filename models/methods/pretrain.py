"""Encoder pretraining as an autoencoder (Li et al. 2019, §2.3–2.4).

Before the VAE's first epoch the model trains with KL weight 0 for `epochs`
epochs; the encoder is kept, the decoder re-initialised (Li et al. footnote 8:
pretraining the decoder too gave worse perplexity), and the KL schedule starts
again from step 0, so FB + annealing (preset `pretrain-fb`) run as in §2.4.

The pretrained encoder is cached under `{data.cache_dir}/pretrain/`, keyed by
everything that shapes it, so trials that differ only in later settings (the
KL schedule, free bits, other methods' parameters) reuse one pretraining.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from models.config import ConfigError
from models.methods import register
from models.methods.base import Method

FORMAT_VERSION = 1
"""Bump when pretraining changes, so stale cached encoders are not reused."""
RESEED_OFFSET = 104729
"""The VAE phase draws from seed + this, not from the stream the model was built with."""


@dataclass
class PretrainParams:
    epochs: int = 10
    """Autoencoder epochs before the VAE trains (Li et al. train to convergence)."""

    def __post_init__(self):
        if self.epochs < 1:
            raise ConfigError(f"methods.pretrain.epochs: must be at least 1, got {self.epochs}")


def cache_key(loop, params: PretrainParams) -> str:
    """Digest of what determines the pretrained encoder: data, model, seed, optimiser, the
    initial weights (which also capture architecture changes by other methods, e.g. BN-VAE)."""
    cfg = loop.cfg
    settings = {"format": FORMAT_VERSION, "data": asdict(cfg.data), "model": asdict(cfg.model),
                "seed": cfg.seed, "pretrain": asdict(params),
                "train": {k: getattr(cfg.train, k) for k in ("optimizer", "lr", "enc_lr_ratio", "clip_grad")}}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in loop.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def _save_atomic(obj, path: Path) -> None:
    import torch
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)  # concurrent trials writing the same key each leave a whole file


@register
class Pretrain(Method):
    name = "pretrain"
    Params = PretrainParams

    def __init__(self, params: PretrainParams):
        super().__init__(params)
        self.recon: list[float] = []  # per pretraining epoch, training reconstruction per sentence
        self.cached = False

    def before_training(self, loop) -> None:
        import torch

        from models.nets import init_uniform
        path = Path(loop.cfg.data.cache_dir) / "pretrain" / f"{cache_key(loop, self.params)}.pt"
        if path.exists():
            saved = torch.load(path, map_location=loop.device, weights_only=False)
            loop.model.encoder.load_state_dict(saved["encoder"])
            self.recon, self.cached = saved["recon"], True
            print(f"pretrain: reusing encoder from {path}", flush=True)
        else:
            self._pretrain(loop)
            _save_atomic({"encoder": loop.model.encoder.state_dict(), "recon": self.recon}, path)
        # Reseed, so a run that reuses the cache continues exactly as one that pretrained.
        torch.manual_seed(loop.cfg.seed + RESEED_OFFSET)
        loop.shuffle_generator.manual_seed(loop.cfg.seed)
        init_uniform(loop.model.decoder)  # a fresh decoder, initialised as at build
        loop.step = 0  # the KL schedule starts with the VAE (§2.4)
        loop.build_optimizers()

    def _pretrain(self, loop) -> None:
        """Autoencoder training (KL weight 0) of the model as built; other methods sit out."""
        methods, loop.methods = loop.methods, []
        loop.kl_weight_override = 0.0
        start = time.perf_counter()
        try:
            for epoch in range(1, self.params.epochs + 1):
                recon = loop.train_on(loop.shuffled())["train/recon"]
                self.recon.append(recon)
                print(f"pretrain epoch {epoch}/{self.params.epochs}: train recon {recon:.3f}", flush=True)
        finally:
            loop.methods, loop.kl_weight_override = methods, None
            loop.elapsed += time.perf_counter() - start  # pretraining is part of the trial's cost

    def after_validation(self, loop, metrics: dict[str, float]) -> None:
        if loop.evaluations == 1 and self.recon:
            metrics["train/pretrain_recon"] = self.recon[-1]
            metrics["train/pretrain_cached"] = float(self.cached)
