"""The sweep service: the CLI, running sweeps (Ray Tune + Optuna + MLflow), analysing them.

One subpackage per responsibility, each owning the library behind it; imports go only
downwards (tests/test_layout.py checks it), and every part may import the two leaf modules,
`errors` and `names`:

    part       owns                                              may import
    cli        the commands of `python -m sweeps`                every part below
    engine     running a sweep: Ray Tune, Optuna's samplers,     space, tracking, analysis
               the trial function, progress
    analysis   trial table, Pareto, export, confirm,             space, tracking (read side)
               sensitivity, report
    cluster    Ray Jobs, the shared tracking server
    tracking   MLflow: server, parent and child runs, reads
    space      the search-space language: model, loading,        (models)
               validation rules
    names      a trial's status and metric names, defined once   nothing
    errors     UserError, which any part raises for bad input;   nothing
               redact, for any text shown that may hold a secret

Ray is imported only by engine (Ray Tune) and cluster (Ray Jobs), MLflow only by tracking,
pyarrow only by analysis; a part uses another through the names its __init__ exports.
Nothing here knows VAE internals: trials hand a config to `models` and report its metrics.
"""
