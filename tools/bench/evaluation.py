"""Evaluation throughput: LiteRT as the workflow evaluates, against Keras ``predict``, for every scheme;
and int8 against fp32 as models grow, to show where int8's advantage on small models goes."""

import time

import numpy as np

from .machine import best_of, stopwatch


def evaluation_step(
    dataset_path,
    model_path,
    folder,
    schemes,
    conversion_settings,
    threads,
    batch_size,
    test_images,
    repeats,
    int16x8_sample,
):
    """Convert the trained model to every scheme, then time Keras predict and LiteRT on the test images.

    Keras: ``model.predict`` at batch 32 (Keras' default) and at the
    evaluation batch size, after one warm-up call each; the faster is the
    baseline. LiteRT "workflow": ``evaluation_interpreters`` + ``predict`` as
    ``run_evaluation`` calls them, interpreters created inside the timing.
    "other": the other layout (one interpreter with ``threads`` threads for
    single-threaded schemes, otherwise ``threads`` one-thread interpreters side
    by side), to show what the workflow's choice buys.
    """
    from pathlib import Path

    from tinyml_quant.conversion import CALIBRATED_SCHEMES, calibration_images, convert
    from tinyml_quant.datasets import load_prepared, seeded_subset
    from tinyml_quant.evaluation import SINGLE_THREADED_SCHEMES, evaluation_interpreters, predict
    from tinyml_quant.runtime import configure_tensorflow, load_interpreter, load_keras_model

    configure_tensorflow(threads)
    dataset = load_prepared(dataset_path)
    images = dataset.x_test[seeded_subset(len(dataset.y_test), test_images or None, 0)]
    model = load_keras_model(model_path)
    result = {"test_images": int(len(images)), "conversion_s": {}, "keras": {}, "litert": {}}
    paths = {}
    for scheme in schemes:
        representative = None
        if scheme in CALIBRATED_SCHEMES:
            settings = conversion_settings[scheme]
            representative = calibration_images(
                dataset.x_train, settings["calibration_images"], settings["calibration_seed"]
            )
        with stopwatch() as timing:
            flatbuffer = convert(model, scheme, representative)
        paths[scheme] = Path(folder) / f"{scheme}.tflite"
        paths[scheme].write_bytes(flatbuffer)
        result["conversion_s"][scheme] = timing["wall"]

    floats = images.astype("float32")
    keras_classes = None
    for keras_batch in sorted({32, batch_size}):
        model.predict(floats[: 2 * keras_batch], batch_size=keras_batch, verbose=0)

        def keras_run(keras_batch=keras_batch):
            with stopwatch() as timing:
                timing["outputs"] = model.predict(floats, batch_size=keras_batch, verbose=0)
            return timing

        best, _ = best_of(keras_run, repeats)
        keras_classes = best["outputs"].argmax(1)
        result["keras"][keras_batch] = {"images_per_s": len(images) / best["wall"], "cpu_s": best["cpu"]}

    for scheme in schemes:
        single_threaded = scheme in SINGLE_THREADED_SCHEMES

        def workflow_run(scheme=scheme):
            with stopwatch() as timing:
                interpreters = evaluation_interpreters(paths[scheme], scheme, threads)
                timing["outputs"], timing["invoke"] = predict(interpreters, images, batch_size)
            timing["interpreters"] = len(interpreters)
            return timing

        best, _ = best_of(workflow_run, 1 if single_threaded else repeats, 0 if single_threaded else 2.0)
        classes = best["outputs"].argmax(1)
        entry = {
            "images_per_s": len(images) / best["wall"],
            "cpu_s": best["cpu"],
            "invoke_images_per_s": len(images) / best["invoke"],
            "interpreters": best["interpreters"],
            "file_bytes": paths[scheme].stat().st_size,
            "agreement_with_keras": float(np.mean(classes == keras_classes)),
        }
        sample = len(images) if not single_threaded else min(len(images), int16x8_sample)

        def other_run(scheme=scheme, single_threaded=single_threaded, sample=sample):
            with stopwatch() as timing:
                if single_threaded or threads == 1:
                    other = [load_interpreter(paths[scheme], threads)]
                else:
                    other = [load_interpreter(paths[scheme], 1) for _ in range(threads)]
                timing["outputs"], _ = predict(other, images[:sample], batch_size)
            timing["interpreters"] = len(other)
            return timing

        best, _ = best_of(other_run, 1 if single_threaded else repeats, 0 if single_threaded else 2.0)
        entry["other"] = {
            "layout": f"1 interpreter x {threads} threads"
            if best["interpreters"] == 1
            else f"{best['interpreters']} interpreters x 1 thread",
            "images": sample,
            "images_per_s": sample / best["wall"],
            "same_predictions": bool(np.array_equal(best["outputs"].argmax(1), classes[:sample])),
        }
        entry["layout"] = (
            f"1 interpreter x {threads} threads"
            if entry["interpreters"] == 1
            else f"{entry['interpreters']} interpreters x 1 thread"
        )
        result["litert"][scheme] = entry
    return result


def int8_scaling_step(shapes, threads, batch_size, images=1000, repeats=3):
    """int8 against fp32 inside LiteRT's ``invoke`` for the same network at growing sizes.

    ``shapes``: ``[(label, model name, knobs, input shape)]``. Returns, per
    label, the MACs, both schemes' invoke-only images/s and the invoke time
    per operator, which shows the fixed cost each operator pays whatever its
    size (quantize, requantize, set-up): it is what int8 cannot shrink.
    """
    from tinyml_quant.architectures import build_model
    from tinyml_quant.conversion import convert
    from tinyml_quant.evaluation import predict
    from tinyml_quant.graph import analyze_graph
    from tinyml_quant.runtime import configure_tensorflow, load_interpreter

    configure_tensorflow(threads, seed=0)
    rng = np.random.default_rng(0)
    results = {}
    for label, model_name, knobs, shape in shapes:
        model = build_model(model_name, shape, 10, **knobs)
        pixels = rng.integers(0, 256, (images, *shape)).astype(np.uint8)
        calibration = pixels[:64].astype(np.float32)
        entry = {}
        for scheme in ("fp32", "int8"):
            flatbuffer = convert(model, scheme, calibration)
            interpreter = load_interpreter(flatbuffer, threads)
            predict(interpreter, pixels[:batch_size], batch_size)

            def run(interpreter=interpreter, pixels=pixels):
                started = time.perf_counter()
                _, invoke = predict(interpreter, pixels, batch_size)
                return {"wall": time.perf_counter() - started, "invoke": invoke}

            best, _ = best_of(run, repeats)
            analysis = analyze_graph(flatbuffer)
            entry[scheme] = {
                "invoke_images_per_s": images / best["invoke"],
                "operators": analysis["operator_total"],
                "invoke_us_per_operator": 1e6 * best["invoke"] / images / analysis["operator_total"],
            }
            entry["macs"] = analysis["macs"]
        entry["int8_vs_fp32"] = entry["int8"]["invoke_images_per_s"] / entry["fp32"]["invoke_images_per_s"]
        results[label] = entry
    return results
