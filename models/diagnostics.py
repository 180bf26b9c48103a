"""Why a run kept its latent or lost it: per validation, the quantity each method's guarantee
rests on (`collapse_diagnostics`, metrics `diag/...`); per run, one line (`verdict`), so that a
run whose method was switched off (BN-VAE by its ε, Scale-VAE by a runaway factor) does not read
like a plain VAE that collapsed."""
from __future__ import annotations

from models import metrics as M
from models.kl import free_bits_diagnostics, free_bits_note

INFORMATIVE_MI = 0.5
"""Nats of MI above which a latent with no active unit is not called collapsed (the collapse
table's criterion): a Scale-VAE whose raw means shrank while its factor grew carries MI through
means that vary below the AU threshold."""


def collapse_diagnostics(loop) -> dict[str, float]:
    """The `diag/...` metrics of this validation: the free-bits hinge's hold and each method's own
    (`Method.diagnose`), from the validation split's posteriors."""
    if not loop.is_vae:
        return {}
    mu, logvar = M.posteriors(loop.model, loop.corpus.valid, batch_size=loop.cfg.data.batch_size, device=loop.device)
    out = free_bits_diagnostics(loop.cfg.kl, mu, logvar)
    for method in loop.methods:
        out.update(method.diagnose(loop, mu, logvar))
    return out


def verdict(loop, test: dict[str, float]) -> str:
    """One line on the tested model: whether its latent is active (test AU, MI, KL), then what
    each method that could keep it says of itself, from that model's validation
    (`Loop.tested_validation`: the best one, not necessarily the last)."""
    if not loop.is_vae:
        return "language model: no latent"
    dims = loop.cfg.model.latent_dim
    if test["au"] > 0:
        # KL beside MI: their difference is the aggregate posterior's KL from the prior (Hoffman &
        # Johnson 2016), which an encoder whose means ran away makes huge while its units count active.
        head = f"latent active: AU {test['au']:.0f}/{dims}, MI {test['mi']:.2f}, KL {test['kl']:.3g}"
    elif test["mi"] >= INFORMATIVE_MI:
        head = (f"no active unit yet MI {test['mi']:.2f}: the posterior means vary below the AU threshold "
                f"({loop.cfg.eval.au_threshold:g}), KL {test['kl']:.3g}")
    else:
        head = f"collapsed: AU 0/{dims}, KL {test['kl']:.3g}, MI {test['mi']:.2f}"
    notes = [note for note in [free_bits_note(loop.cfg.kl, loop.tested_validation()),
                               *(method.verdict(loop) for method in loop.methods)] if note]
    return "; ".join([head, *notes])
