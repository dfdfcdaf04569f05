"""The benchmark: the study's costs measured against baselines and the machine's limits, in one run.

    python -m tools.bench [--quick] [--parts ...] [--default-run FOLDER] [--output-dir reports]

Every figure is measured in this run on this machine, most as a ratio of two
things measured side by side; no test is timed. Modules, one concern each:

* ``machine``: what the machine is, stopwatches, child processes, best-of timing;
* ``roofline``: the practical limits (float32 and bfloat16 matrix products in
  TensorFlow, int8 in LiteRT) that throughputs are compared with;
* ``training``: the workflow's training against a bare ``model.fit``, its
  GFLOP/s against the roofline, where a training step's time goes, and the
  speed-ups tried;
* ``paths``: every built-in model under each CPU training path Keras offers
  (TensorFlow, TensorFlow with XLA, JAX, each in float32 and mixed_bfloat16),
  and the rule that adopts one for the default;
* ``evaluation``: LiteRT against Keras, every scheme against fp32, int8 on
  small models;
* ``workflow``: Snakemake's reruns, dry runs and parallel jobs;
* ``projection``: the grid's wall time on more cores, simulated from a run's
  benchmark files over its job graph;
* ``report``: ``bench.md`` and ``bench.csv``.

It reuses the library (datasets, training, conversion, evaluation, graph's
MAC counter) and the workflow runner the tests use (``tools.workflow``).
"""
