"""Host-CPU latency of a variant with LiteRT."""

import json

import pytest

from tinyml_quant.latency import measure_latency, run_latency

from synthetic import save_as_prepared, write_variant

VARIANT = {"dataset": "toy", "model": "custom", "scheme": "fp32"}


def test_latency_is_positive_and_records_its_settings(trained, flatbuffers):
    _, images, _, _ = trained
    result = measure_latency(flatbuffers["int8"], images[0], threads=1, invokes=20, warmup=2)
    assert 0 < result["median_ms"] <= result["p90_ms"] < 1000
    assert (result["threads"], result["invokes"], result["warmup"], result["batch_size"]) == (1, 20, 2, 1)
    assert result["timing"].startswith("host-CPU") and result["clock"] == "host-CPU"


def test_run_latency_writes_json(trained, flatbuffers, tmp_path):
    _, images, labels, _ = trained
    tflite_path = tmp_path / "fp32.tflite"
    write_variant(tflite_path, flatbuffers["fp32"], "fp32")
    dataset_path = save_as_prepared(tmp_path / "toy.npz", images, labels)
    returned = run_latency(tflite_path, dataset_path, VARIANT, 2, 10, 1, tmp_path / "latency.json")
    written = json.loads((tmp_path / "latency.json").read_text())
    assert written == returned
    assert written["threads"] == 2 and written["median_ms"] > 0
    assert {key: written[key] for key in VARIANT} == VARIANT


@pytest.mark.parametrize("settings", [{"threads": 0}, {"invokes": 0}, {"warmup": -1}, {"threads": 1.5}])
def test_latency_settings_are_checked(flatbuffers, settings):
    with pytest.raises(ValueError, match=next(iter(settings))):
        measure_latency(flatbuffers["fp32"], **settings)
