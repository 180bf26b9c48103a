"""Search spaces: validation on load, define-by-run sampling with real Optuna, trial configs."""
from __future__ import annotations

import inspect
import math
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

from models.config import ConfigError

from models.resolve import parse_config
from sweeps.space import METHOD, Objective, Param, Resources, SpaceError, load_space
from sweeps.space import loader, parameters, probe, rules

optuna.logging.set_verbosity(optuna.logging.WARNING)


def write(tmp_path, text: str | bytes, name: str = "space.yaml") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):  # not necessarily text at all
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    return str(path)


LR = "params:\n  train.lr: {type: float, low: 0.1, high: 1.0}\n"

# (YAML text, key the message must name, problem it must state)
MALFORMED = [
    ("params: {a: [1, 2}\n", "line 1", "expected ',' or ']'"),
    ("trials: 3\ntrials: 4\n", "line 2", "duplicate key 'trials'"),
    ("method: vae\nfixed:\n  train: {lr: 0.5, lr: 1.0}\n", "line 3", "duplicate key 'lr'"),
    ("fixed: {[train.lr]: 0.5}\n", "line 1", "a key must be a name, got a list"),
    ("method: vae\n? {a: 1}\n: 2\n", "line 2", "a key must be a name, got a dict"),
    (b"method: vae # caf\xe9\n", "not UTF-8 text", "byte 17"),
    ("- a\n- b\n", "expected a mapping", "method"),
    ("trails: 3\n", "trails", "unknown key"),
    ("method: fancy\n", "method", "unknown method preset 'fancy'"),
    ("method: vae\nmethods: {vae: {}}\n", "methods", "either `method` or `methods`"),
    ("methods: {mine: {preset: nope}}\n", "methods.mine.preset", "unknown method preset 'nope'"),
    ("methods: {}\n", "methods", "at least one"),
    ("methods: {fb: {params: {}, fixd: {}}}\n", "methods.fb.fixd", "unknown key"),
    ("params:\n  train.lr: {type: double, low: 0.1, high: 1.0}\n", "params.train.lr", "type must be one of"),
    ("params:\n  train.lr: {type: float, low: 0.1, high: 1.0, lg: true}\n", "params.train.lr", "unknown field 'lg'"),
    ("params:\n  train.lr: {type: float, low: 0.1}\n", "params.train.lr", "needs `high`"),
    ("params:\n  train.lr: {type: float, low: 1.0, high: 0.1}\n", "params.train.lr", "low (1.0) must be < high (0.1)"),
    ("params:\n  train.lr: {type: float, low: 0.0, high: 1.0, log: true}\n", "params.train.lr",
     "log scale needs low > 0"),
    ("params:\n  train.lr: {type: float, low: 1e-3, high: 1.0}\n", "params.train.lr.low", "write 1.0e-3"),
    ("params:\n  train.lr: {type: float, low: 0.1, high: 1.0e1}\n", "params.train.lr.high", "YAML reads"),
    ("params:\n  train.lr: {type: float, low: 0.1, high: 1.0, step: 0}\n", "params.train.lr", "step must be positive"),
    ("params:\n  train.lr: {type: float, low: 0.1, high: 1.0, step: 0.1, log: true}\n", "params.train.lr",
     "log and step cannot be combined"),
    ("params:\n  train.lr: {type: float, low: 0.1, high: 1.0, step: 0.4}\n", "params.train.lr",
     "not a multiple of step"),
    ("params:\n  model.latent_dim: {type: int, low: 2.5, high: 8}\n", "params.model.latent_dim.low",
     "expected an integer"),
    ("params:\n  model.pooling: {type: categorical, choices: []}\n", "params.model.pooling", "non-empty list"),
    ("params:\n  model.pooling: {type: categorical, choices: [max, max]}\n", "params.model.pooling", "duplicate"),
    ("params:\n  model.pooling: {type: categorical, choices: [max], low: 1}\n", "params.model.pooling",
     "unknown field 'low'"),
    ("params:\n  train.lrr: {type: float, low: 0.1, high: 1.0}\n", "params.train.lrr", "unknown key 'train.lrr'"),
    ("params:\n  model.pooling: {type: categorical, choices: [max, median]}\n", "params.model.pooling",
     "'median' is not one of"),
    ("params:\n  model.dec_dropout_in: {type: float, low: 0.0, high: 1.5}\n", "params.model.dec_dropout_in",
     "must be in [0, 1]"),
    ("params:\n  kl.cycles: {type: int, low: 1, high: 4, when: {kl.anneal: cyclical}}\n", "params.kl.cycles.when",
     "'kl.anneal' is not a parameter declared above"),
    ("params:\n  kl.anneal: {type: categorical, choices: [linear, cyclical]}\n"
     "  kl.cycles: {type: int, low: 1, high: 4, when: {kl.anneal: cyclic}}\n", "params.kl.cycles.when",
     "'cyclic' is not among the choices of 'kl.anneal'"),
    ("params:\n  kl.weight: {type: float, low: 0.1, high: 1.0}\n"
     "  kl.cycles: {type: int, low: 1, high: 4, when: {kl.weight: 0.5}}\n", "params.kl.cycles.when",
     "not categorical"),
    ("params:\n  kl.anneal: {type: categorical, choices: [linear, cyclical]}\n"
     "  model.pooling: {type: categorical, choices: [max, mean], when: {kl.anneal: linear}}\n"
     "  model.word_dropout: {type: float, low: 0, high: 0.5, when: {kl.anneal: cyclical, model.pooling: max}}\n",
     "params.model.word_dropout", "can never all hold"),
    ("params:\n  kl.free_bits.kind: {type: categorical, choices: [fb, fbp]}\n"
     "  kl.free_bits.lam: {type: float, low: 0.0, high: 9.0}\n",
     "params.kl.free_bits.lam", "first value: kl.free_bits.lam: must be positive"),
    ("fixed: {model.latnt_dim: 3}\n", "fixed", "unknown key 'model.latnt_dim'"),
    ("fixed: {train.max_epochs: 3}\n", "fixed.train.max_epochs", "top-level `epochs`"),
    ("fixed: {train.lr: 0.5}\n" + LR, "params.train.lr", "also set under fixed"),
    ("methods:\n  a: {preset: fb, params: {model.pooling: {type: categorical, choices: [max]}}}\n"
     "  b: {preset: vae, params: {model.pooling: {type: categorical, choices: [max, mean]}}}\n",
     "methods.b.params.model.pooling", "declared differently in methods.a"),
    (LR + "methods: {vae: {fixed: {train.lr: 0.5}}}\n", "methods.vae.fixed.train.lr", "also searched"),
    (LR + "methods: {vae: {params: {train.lr: {type: float, low: 0.1, high: 0.5}}}}\n",
     "methods.vae.params.train.lr", "already searched"),
    ("methods:\n  fb: {params: {kl.free_bits.lam: {type: float, low: 0.0, high: 9.0}}}\n",
     "methods.fb", "kl.free_bits.lam: must be positive"),
    ("objectives: [{metric: test/nll, mode: minimize}]\n", "objectives[0]", "mode must be min or max"),
    ("objectives: [{metric: test/bleu, mode: max}]\n", "objectives[0]", "unknown metric 'test/bleu'"),
    ("objectives: [{metric: test/nll, mode: min}, {metric: test/nll, mode: max}]\n", "objectives[1]", "twice"),
    ("objectives: []\n", "objectives", "non-empty list"),
    ("trials: 0\n", "trials", "at least 1"),
    ("epochs: ten\n", "epochs", "expected an integer"),
    ("max_concurrent: 1.5\n", "max_concurrent", "expected an integer"),
    ("resources: {cpus: 0}\n", "resources", "cpus must be > 0"),
    ("resources: {tpus: 1}\n", "resources.tpus", "unknown key"),
]


@pytest.mark.parametrize("text, key, problem", MALFORMED, ids=[f"{i}-{c[1]}" for i, c in enumerate(MALFORMED)])
def test_malformed_space_names_file_key_and_problem(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert key in message and problem in message, message


def test_missing_file_is_a_space_error(tmp_path):
    with pytest.raises(SpaceError, match="nope.yaml: cannot read"):
        load_space(tmp_path / "nope.yaml")


def test_defaults(tmp_path):
    space = load_space(write(tmp_path, "method: fb\n", name="mine.yaml"))
    assert (space.name, space.method, space.params, space.methods) == ("mine", "fb", (), {})
    assert space.objectives == (Objective("test/nll", "min"), Objective("test/au", "max"))
    assert (space.trials, space.epochs, space.max_concurrent) == (20, None, 1)
    assert space.resources == Resources(cpus=1.0, gpus=0.0)


CONDITIONAL = """\
    method: anneal
    params:
      kl.anneal: {type: categorical, choices: [constant, linear, cyclical]}
      kl.steps: {type: categorical, choices: [null, 500, 1000], when: {kl.anneal: linear}}
      kl.epochs: {type: float, low: 2.0, high: 40.0, log: true, when: {kl.steps: null}}
      kl.cycles: {type: int, low: 2, high: 8, step: 2, when: {kl.anneal: cyclical}}
      model.dec_dropout_in: {type: float, low: 0.0, high: 0.5, step: 0.1}
      model.word_dropout: {type: float, low: 0.01, high: 0.5, log: true, when: {kl.anneal: [constant, linear]}}
    objectives: [{metric: test/nll, mode: min}]
"""


def expected_keys(sampled: dict) -> set:
    keys = {"kl.anneal", "model.dec_dropout_in"}
    kind = sampled["kl.anneal"]
    if kind == "linear":
        keys |= {"kl.steps"} | ({"kl.epochs"} if sampled["kl.steps"] is None else set())
    if kind == "cyclical":
        keys.add("kl.cycles")
    if kind in ("constant", "linear"):
        keys.add("model.word_dropout")
    return keys


def run_study(space, n: int) -> list[tuple[dict, optuna.trial.FrozenTrial]]:
    study = optuna.create_study(directions=["minimize" if o.mode == "min" else "maximize" for o in space.objectives],
                                sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=10))
    out = []
    for _ in range(n):
        trial = study.ask()
        sampled = space.define_by_run(trial)
        study.tell(trial, [len(sampled)] * len(space.objectives))  # any value: TPE must keep honouring the space
        out.append((sampled, study.trials[-1]))
    return out


def test_define_by_run_follows_conditions_bounds_log_and_step(tmp_path):
    space = load_space(write(tmp_path, CONDITIONAL))
    results = run_study(space, 60)
    for sampled, frozen in results:
        assert set(sampled) == expected_keys(sampled)
        assert frozen.params == sampled  # every value came from a suggest call, nothing else
        if "kl.epochs" in sampled:
            assert 2.0 <= sampled["kl.epochs"] <= 40.0 and frozen.distributions["kl.epochs"].log
        if "kl.cycles" in sampled:
            assert sampled["kl.cycles"] in (2, 4, 6, 8)
        drop = sampled["model.dec_dropout_in"]
        assert 0.0 <= drop <= 0.5 and math.isclose(drop * 10, round(drop * 10), abs_tol=1e-9)
        if "model.word_dropout" in sampled:
            assert 0.01 <= sampled["model.word_dropout"] <= 0.5
        parse_config(space.trial_config(sampled))
    assert {s["kl.anneal"] for s, _ in results} == {"constant", "linear", "cyclical"}
    assert any("kl.epochs" in s for s, _ in results) and any(s.get("kl.steps") for s, _ in results)


JOINT = """\
    fixed: {model.latent_dim: 8}
    params:
      train.lr: {type: float, low: 0.1, high: 1.0, log: true}
      model.pooling: {type: categorical, choices: [last, max], when: {method: [anneal, fb]}}
    methods:
      vae: {}
      anneal:
        params:
          kl.epochs: {type: float, low: 1.0, high: 4.0}
      fb:
        params:
          kl.free_bits.lam: {type: float, low: 2.0, high: 9.0}
      fb-drop:
        preset: fb
        fixed: {model.word_dropout: 0.2}
        params:
          kl.free_bits.lam: {type: float, low: 2.0, high: 9.0}
    epochs: 3
"""


def test_joint_space_samples_each_method_with_its_own_params(tmp_path):
    space = load_space(write(tmp_path, JOINT))
    results = run_study(space, 40)
    own = {"vae": set(), "anneal": {"kl.epochs", "model.pooling"}, "fb": {"kl.free_bits.lam", "model.pooling"},
           "fb-drop": {"kl.free_bits.lam"}}
    for sampled, _ in results:
        assert set(sampled) == {METHOD, "train.lr"} | own[sampled[METHOD]]
        config = space.trial_config(sampled)
        assert config["model"]["latent_dim"] == 8 and config["train"]["max_epochs"] == 3
        if sampled[METHOD] == "fb-drop":  # the preset and the entry's fixed values
            assert config["model"]["word_dropout"] == 0.2 and config["kl"]["free_bits"]["kind"] == "fb"
    assert {s[METHOD] for s, _ in results} == set(own)


def test_trial_config_layers_preset_fixed_sampled_overrides(tmp_path):
    space = load_space(write(tmp_path, """\
        method: pool-max
        fixed:
          train.lr: 0.5
          kl: {anneal: linear, epochs: 3.0}
        params:
          kl.free_bits.kind: {type: categorical, choices: [fb, fbp]}
          kl.free_bits.lam: {type: float, low: 2.0, high: 9.0}
        epochs: 7
        """))
    config = space.trial_config({"kl.free_bits.kind": "fbp", "kl.free_bits.lam": 3.0},
                                {"train.lr": 0.25, "data.name": "corpus/ptb"})
    assert config["model"]["pooling"] == "max"  # preset
    assert config["kl"]["anneal"] == "linear" and config["kl"]["epochs"] == 3.0  # a fixed mapping merges
    assert config["kl"]["start"] == 0.1  # ... and keeps the defaults beside it
    assert config["kl"]["free_bits"] == {"kind": "fbp", "lam": 3.0}  # sampled
    assert config["train"]["lr"] == 0.25 and config["data"]["name"] == "corpus/ptb"  # overrides win
    assert config["train"]["max_epochs"] == 7  # the space's epochs
    assert space.trial_config({"kl.free_bits.kind": "fb", "kl.free_bits.lam": 3.0},
                              {"train.max_epochs": 2})["train"]["max_epochs"] == 2
    assert parse_config(config).kl.free_bits.kind == "fbp"
    with pytest.raises(ConfigError, match="train.lr"):
        space.trial_config({"kl.free_bits.kind": "fb", "kl.free_bits.lam": 3.0}, {"train.lr": "fast"})


def test_trial_config_refuses_an_unknown_method(tmp_path):
    space = load_space(write(tmp_path, JOINT))
    with pytest.raises(SpaceError, match="method: 'beta' is not one of vae, anneal, fb, fb-drop"):
        space.trial_config({METHOD: "beta", "train.lr": 0.5})


def test_ray_optuna_search_accepts_define_by_run(tmp_path):
    from ray.tune.search.optuna import OptunaSearch

    space = load_space(write(tmp_path, JOINT))
    search = OptunaSearch(space=space.define_by_run, metric=["test/nll", "test/au"], mode=["min", "max"], seed=0)
    for i in range(5):
        config = search.suggest(f"trial_{i}")
        assert METHOD in config and "train.lr" in config  # dotted names stay flat: Ray only splits on "/"
        space.trial_config(config)


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))


def test_a_space_per_method_that_matters():
    expected = {"vae", "anneal", "beta", "cyclic", "fb", "fbp", "pretrain-fb", "aggressive", "pooling", "scale",
                "bn", "joint", "demo"}
    assert expected <= {path.stem for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_shipped_space_loads_and_samples(path):
    space = load_space(path)
    for sampled, _ in run_study(space, 12):
        parse_config(space.trial_config(sampled))


def test_grid_sampler_needs_unconditional_categoricals(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("method: fb\nsampler: grid\nparams:\n  kl.free_bits.lam: {type: float, low: 2.0, high: 4.0}\n")
    with pytest.raises(SpaceError, match=r"grid.yaml: params\.kl\.free_bits\.lam: a grid"):
        load_space(path)
    path.write_text("method: fb\nsampler: grid\nparams:\n  seed: {type: categorical, choices: [0, 1, 2]}\n")
    assert load_space(path).sampler == "grid"
    path.write_text("method: fb\nsampler: random\n")
    with pytest.raises(SpaceError, match="sampler: expected tpe or grid"):
        load_space(path)


def built(text: str):
    """A space with every rule applied but the final probes: what the probes take."""
    return loader.build(yaml.safe_load(textwrap.dedent(text)), "space.yaml")


FLOAT = {"type": "float", "low": 0.1, "high": 1.0}
# (rule, its arguments, key its verdict must name, problem it must state): each rule on its own.
RULE_CASES = [
    (rules.mapping, ([1], "fixed"), "fixed", "expected a mapping, got [1]"),
    (rules.number, ("1e-3", "params.x.low"), "params.x.low", "write 1.0e-3"),
    (rules.number, (float("inf"), "resources.cpus"), "resources.cpus", "expected a finite number"),
    (rules.integer, (True, "trials"), "trials", "expected an integer"),
    (rules.integer, (0, "trials", 1), "trials", "must be at least 1"),
    (rules.preset, ("fancy", "method"), "method", "unknown method preset 'fancy'"),
    (rules.config_key, ("model..pooling", "fixed"), "fixed", "'model..pooling' is not a dotted config key"),
    (rules.config_key, ("method", "params"), "params.method", "chosen by `method:`"),
    (rules.config_key, ("train.max_epochs", "fixed"), "fixed.train.max_epochs", "top-level `epochs`"),
    (rules.top_level, ({"trails": 3},), "trails", "unknown key"),
    (rules.top_level, ({"method": "vae", "methods": {"vae": {}}},), "methods", "not both"),
    (rules.method_entries, ({"methods": {}},), "methods", "at least one"),
    (rules.method_entries, ({"methods": ["fb"]},), "methods", "expected a mapping"),
    (rules.fixed, ({"model.latent_dim": 3, 7: 1}, "fixed"), "fixed", "7 is not a dotted config key"),
    (rules.objectives, ([],), "objectives", "non-empty list"),
    (rules.objectives, ([{"metric": "test/nll"}],), "objectives[0]", "exactly the keys metric and mode"),
    (rules.objectives, ([{"metric": "test/bleu", "mode": "max"}],), "objectives[0]", "unknown metric 'test/bleu'"),
    (rules.resources, ({"gpus": -1},), "resources", "gpus >= 0"),
    (rules.resources, ({"cpus": "two"},), "resources.cpus", "expected a finite number"),
    (rules.sampler, ("random", (), {}), "sampler", "expected tpe or grid"),
    (rules.sampler, ("grid", (), {"fb": {}}), "sampler", "a single method"),
    (parameters.params, ({"kl.weight": FLOAT}, "params", {}, {"kl.weight": 0.5}), "params.kl.weight",
     "also set under fixed"),
    (parameters.params, ({"kl.weight": FLOAT}, "methods.fb.params", {"kl.weight": ()}, {}),
     "methods.fb.params.kl.weight", "already searched"),
    (parameters.parameter, ("x", {"type": "double"}, "params.x", {}), "params.x", "type must be one of"),
    (parameters.parameter, ("x", {"type": {"a": 1}}, "params.x", {}), "params.x", "type must be one of"),
    (parameters.parameter, ("x", {**FLOAT, "choices": [1]}, "params.x", {}), "params.x",
     "unknown field 'choices' for a float parameter"),
    (parameters.choices, ([[1]], "params.x"), "params.x", "[1] is not a string, number, boolean or null"),
    (parameters.choices, ([1, 1], "params.x"), "params.x", "duplicate"),
    (parameters.bounds, ("float", {"low": 0.1}, "params.x"), "params.x", "needs `high`"),
    (parameters.bounds, ("float", {**FLOAT, "log": "yes"}, "params.x"), "params.x", "log must be true or false"),
    (parameters.bounds, ("int", {"low": 1, "high": 4, "step": 1.5}, "params.x"), "params.x.step",
     "expected an integer"),
    (parameters.bounds, ("float", {**FLOAT, "step": 0.4}, "params.x"), "params.x", "not a multiple of step"),
    (parameters.conditions, ({"y": "a"}, "params.x", {}), "params.x.when", "'y' is not a parameter declared above"),
    (parameters.conditions, ({"y": []}, "params.x", {"y": ("a",)}), "params.x.when", "empty list"),
    (parameters.conditions, ({"y": "b"}, "params.x", {"y": ("a",)}), "params.x.when", "'b' is not among the choices"),
    (parameters.branch, (3, {}, {}, (), (3,)), "methods", "method names must be strings, got 3"),
    (parameters.branch, ("fb", {"fixd": {}}, {}, (), ("fb",)), "methods.fb.fixd", "unknown key"),
    (parameters.branch, ("fb", {"fixed": {"train.lr": 0.5}}, {}, (Param("train.lr", "float", 0.1, 1.0),), ("fb",)),
     "methods.fb.fixed.train.lr", "also searched in the top-level params"),
    (parameters.branch, ("mine", {}, {}, (), ("mine",)), "methods.mine.preset", "unknown method preset 'mine'"),
    (probe.same_optuna_names, (built("""\
        methods:
          a: {preset: fb, params: {train.lr: {type: float, low: 0.1, high: 1.0}}}
          b: {preset: vae, params: {train.lr: {type: float, low: 0.1, high: 1.0, log: true}}}
        """),), "methods.b.params.train.lr", "declared differently in methods.a"),
    (probe.accepted_by_models, (built("params:\n  model.pooling: {type: categorical, choices: [max, median]}\n"),),
     "params.model.pooling", "value 'median' rejected by models"),
    (probe.accepted_by_models, (built("fixed: {kl.anneal: sometimes}\n"),), "fixed",
     "rejected by models with every parameter at its first value"),
    (probe.accepted_by_models, (built("""\
        params:
          kl.anneal: {type: categorical, choices: [linear, cyclical]}
          model.pooling: {type: categorical, choices: [max, mean], when: {kl.anneal: linear}}
          kl.cycles: {type: int, low: 1, high: 4, when: {kl.anneal: cyclical, model.pooling: max}}
        """),), "params.kl.cycles", "can never all hold"),
]


@pytest.mark.parametrize("rule, args, key, problem", RULE_CASES,
                         ids=[f"{i}-{case[0].__name__}" for i, case in enumerate(RULE_CASES)])
def test_each_rule_names_the_key_and_the_problem(rule, args, key, problem):
    with pytest.raises(rules.Invalid) as info:
        rule(*args)
    assert info.value.key == key and problem in info.value.problem, str(info.value)


def test_every_rule_has_its_cases():
    defined = {f for module in (rules, parameters, probe) for name, f in vars(module).items()
               if inspect.isfunction(f) and f.__module__ == module.__name__ and not name.startswith("_")}
    assert defined == {case[0] for case in RULE_CASES}
