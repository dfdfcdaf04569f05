"""TinyML quantization study: datasets, models, TFLite conversion, evaluation, reports.

Every stage is a plain function here; the Snakemake scripts in ``scripts/``
only call them. Heavy libraries (TensorFlow, LiteRT, pandas) are imported by
the modules that need them, never by this package's ``__init__``.
"""

__version__ = "0.1.0"

SCHEMES = ("fp32", "dynamic_range", "float16", "int8", "int16x8")
MODELS = ("resnet_v1", "resnet_v2", "mobilenet_v1", "mobilenet_v2", "custom")
