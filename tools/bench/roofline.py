"""The machine's practical limits: large matrix products in TensorFlow (float32, bfloat16) and LiteRT (float32, int8).

A throughput means little alone; against what the same threads reach on the
friendliest work there is (one large matrix product) it says how much of the
machine a model uses. FLOPs count a multiply-accumulate as two operations.
"""

import time

import numpy as np

from .machine import best_of


def tensorflow_matmul_gflops(size=2048, dtype="float32", threads=2, repeats=5):
    """GFLOP/s of ``size`` x ``size`` matrix products through TensorFlow on ``threads`` threads."""
    import tensorflow as tf

    from tinyml_quant.runtime import configure_tensorflow

    configure_tensorflow(threads)
    rng = np.random.default_rng(0)
    a = tf.cast(tf.constant(rng.standard_normal((size, size), np.float32)), dtype)
    b = tf.cast(tf.constant(rng.standard_normal((size, size), np.float32)), dtype)
    product = tf.function(lambda x, y: tf.linalg.matmul(x, y))
    product(a, b).numpy()  # traces, warms the kernels

    def run():
        started = time.perf_counter()
        product(a, b).numpy()
        return {"wall": time.perf_counter() - started}

    best, _ = best_of(run, repeats)
    return 2 * size**3 / best["wall"] / 1e9


def litert_dense_gflops(units=2048, batch=256, threads=2, repeats=5):
    """GFLOP/s of one large dense layer in LiteRT, as float32 and as full-integer int8 (XNNPACK's GEMMs)."""
    import keras

    from tinyml_quant.conversion import convert
    from tinyml_quant.runtime import load_interpreter

    inputs = keras.Input((units,))
    model = keras.Model(inputs, keras.layers.Dense(units, use_bias=False)(inputs))
    rng = np.random.default_rng(0)
    samples = rng.uniform(-1, 1, (32, units)).astype(np.float32)
    rates = {}
    for scheme in ("fp32", "int8"):
        interpreter = load_interpreter(convert(model, scheme, samples), threads)
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], [batch, units])
        interpreter.allocate_tensors()
        data = np.zeros((batch, units), detail["dtype"])
        interpreter.set_tensor(detail["index"], data)
        interpreter.invoke()

        def run(interpreter=interpreter):
            started = time.perf_counter()
            interpreter.invoke()
            return {"wall": time.perf_counter() - started}

        best, _ = best_of(run, repeats)
        rates[scheme] = 2 * batch * units * units / best["wall"] / 1e9
    return rates


def measure(threads=2, size=2048):
    """Every limit, in the calling process (run it in a child: TensorFlow's threads are fixed at first use)."""
    litert = litert_dense_gflops(size, threads=threads)
    return {
        "tensorflow_float32_gflops": tensorflow_matmul_gflops(size, "float32", threads),
        "tensorflow_bfloat16_gflops": tensorflow_matmul_gflops(size, "bfloat16", threads),
        "litert_float32_gflops": litert["fp32"],
        "litert_int8_gops": litert["int8"],
        "threads": threads,
        "size": size,
    }
