"""The sweep service: the CLI, running sweeps (Ray Tune + Optuna + MLflow), analysing them.

One subpackage per responsibility, each owning the library behind it, and three leaf
modules; imports go only downwards (tests/test_layout.py checks it):

    part       owns                                              may import
    cli        the commands of `python -m sweeps`                every part below
    engine     running a sweep: the driver, Ray Tune, Optuna's   space, tracking, analysis,
               samplers, the trial function, progress            record, names, errors
    analysis   trial table, Pareto, export, confirm,             space, tracking (read side),
               sensitivity, report                               names, errors
    cluster    Ray Jobs, the shared tracking server              errors
    tracking   MLflow: server, parent and child runs, reads      names, errors
    space      the search-space language: model, loading,        names (and models)
               validation rules
    record     a sweep's folder and its record (sweep.json)      errors
    names      a trial's status and metric names, defined once   nothing
    errors     UserError, which any part raises for bad input;   nothing
               redact, for any text shown that may hold a secret

Ray is imported only by engine (Ray Tune) and cluster (Ray Jobs), MLflow only by tracking,
pyarrow only by analysis; a part uses another through the names its __init__ exports.
Nothing here knows VAE internals: trials hand a config to `models` and report its metrics.
"""
