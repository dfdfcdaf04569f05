"""The Keras backend and the accelerator a training job runs on (``training.backend``, ``training.accelerator``).

Keras reads its backend once, when it is first imported, from the
``KERAS_BACKEND`` variable: ``select_backend`` sets it (and the backend's
device and thread settings) before anything imports Keras, and refuses, naming
the setting, a backend that is unknown, not installed, or different from the
one a process already imported (``backend_environment``: the variables it sets,
for a process about to be started). ``check_accelerator`` then asks the backend
which devices it sees, after the import, and refuses ``gpu`` where there is
none. Nothing here imports Keras, TensorFlow or JAX at import time.
"""

import importlib.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

# The Keras backends a training job may run under, with the module each needs.
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax"}
ACCELERATORS = ("auto", "cpu", "gpu")
# What to install for each backend (pyproject.toml's optional groups).
INSTALL = {
    "tensorflow": "pip install -e .",
    "jax": "pip install -e '.[jax]' (CPU) or pip install -e '.[gpu]' (NVIDIA GPU, CUDA)",
}


class BackendError(ValueError):
    """A backend or accelerator setting this machine or process cannot honour; the message names the key."""


def check_backend_name(backend):
    if backend not in BACKENDS:
        raise BackendError(f"training.backend: unknown backend {backend!r}; use one of {sorted(BACKENDS)}")


def check_accelerator_name(accelerator):
    if accelerator not in ACCELERATORS:
        raise BackendError(f"training.accelerator: unknown accelerator {accelerator!r}; use one of {ACCELERATORS}")


def backend_installed(backend):
    return importlib.util.find_spec(BACKENDS[backend]) is not None


def select_backend(backend, accelerator="auto", threads=1):
    """Make ``backend`` the Keras backend of this process, before Keras is imported; raise BackendError if not.

    ``accelerator`` ``cpu`` hides every GPU from the backend. ``threads``
    bounds JAX's CPU thread pool as TensorFlow's is bounded
    (``runtime.configure_tensorflow``): a Snakemake job gets the cores its rule
    asks for, no more.
    """
    check_backend_name(backend)
    check_accelerator_name(accelerator)
    if not backend_installed(backend):
        raise BackendError(
            f"training.backend: {backend!r} is not installed in this environment ({sys.executable}); "
            f"install it with: {INSTALL[backend]}"
        )
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise BackendError(
                f"training.backend: {backend!r} was asked for, but this process already imported Keras with the "
                f"{current!r} backend; Keras reads its backend once, so train in a new process"
            )
    os.environ.update(backend_environment(backend, accelerator, threads, os.environ))


def backend_environment(backend, accelerator, threads, environment):
    """The variables that make a new process train under ``backend`` on ``accelerator`` with ``threads`` CPU threads.

    ``environment`` is the one they are added to (``os.environ``, or a child
    process's); what it already sets for JAX's memory and threads is kept. A
    pure function: the benchmark gives each training child these variables.
    """
    chosen = {"KERAS_BACKEND": backend}
    if backend == "jax":
        if accelerator == "cpu":
            chosen["JAX_PLATFORMS"] = "cpu"
        elif "XLA_PYTHON_CLIENT_PREALLOCATE" not in environment:
            # JAX takes 75 % of a GPU's memory up front; Snakemake may run several training jobs on one GPU.
            chosen["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        # XLA's CPU runtime otherwise starts a thread per core, whatever the job was given; on a GPU
        # the host's threads only feed it.
        flags = environment.get("XLA_FLAGS", "")
        if accelerator != "gpu" and "intra_op_parallelism_threads" not in flags:
            chosen["XLA_FLAGS"] = (
                f"{flags} --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                f"intra_op_parallelism_threads={threads}"
            ).strip()
    elif accelerator == "cpu":
        chosen["CUDA_VISIBLE_DEVICES"] = "-1"
    return chosen


def visible_gpus(backend):
    """The GPUs ``backend`` sees (names), once Keras has imported it."""
    if backend == "jax":
        import jax

        return [str(device) for device in jax.devices() if device.platform == "gpu"]
    import tensorflow as tf

    return [device.name for device in tf.config.list_physical_devices("GPU")]


def check_accelerator(backend, accelerator):
    """The device training will run on, as a phrase for the log; BackendError for ``gpu`` where none is found."""
    gpus = [] if accelerator == "cpu" else visible_gpus(backend)
    if accelerator == "gpu" and not gpus:
        raise BackendError(
            f"training.accelerator: gpu was asked for, but the {backend} backend finds no GPU on this machine "
            f"({os.uname().nodename}); use auto to train on the CPU where there is none"
        )
    where = f"GPU ({', '.join(gpus)})" if gpus else "CPU"
    if accelerator == "auto" and not gpus:
        logger.info("training.accelerator is auto and the %s backend finds no GPU: training on the CPU", backend)
    return where


def backend_version(backend):
    module = importlib.import_module(BACKENDS[backend])
    return module.__version__
