"""TinyML quantization study: datasets, models, TFLite conversion, evaluation, measurements, reports.

Every stage is a plain function here; the Snakemake scripts in ``scripts/``
only call them. The workflow imports this package while it parses its config,
so modules it reads names from (``config``, ``conversion``, ``datasets``,
``figures`` and what they import) import TensorFlow and LiteRT only inside the
functions that use them.
"""

__version__ = "0.2.0"
