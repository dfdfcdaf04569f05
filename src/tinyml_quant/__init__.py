"""TinyML quantization study: datasets, models, TFLite conversion, evaluation, measurements, reports.

Every stage is a plain function here; the Snakemake scripts in ``scripts/``
only call them.

Imports are at the top of each module, with one exception. The workflow
imports ``config``, ``conversion``, ``datasets``, ``figures``, ``firmware`` and
``recovery`` (and what they import: ``architectures``, ``devices``,
``evaluation``, ``files``, ``graph``, ``micro``, ``readers``) while it parses,
and every job parses it again; so these modules import TensorFlow, Keras,
LiteRT, TFLite Micro and matplotlib inside the functions that use them. Measured
here: TensorFlow or Keras about 4 s, matplotlib 0.65 s, TFLite Micro 0.26 s and
LiteRT 0.16 s per import, which each of some 450 jobs of the default study
would pay again.
"""

__version__ = "0.3.0.dev0"
