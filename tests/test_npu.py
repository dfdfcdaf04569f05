"""The NPU stage: Arm's Vela compiling the study's variants for an Ethos-U, and what it estimates."""

import json

import pytest

from tinyml_quant.npu import check_configuration, compile_for_npu, run_npu_estimate

NPU = {
    "accelerator": "ethos-u55-128",
    "clock_mhz": 400,
    "system_config": "Ethos_U55_High_End_Embedded",
    "memory_mode": "Shared_Sram",
}


def test_an_int8_variant_compiles_and_its_time_is_its_cycles_at_the_boards_npu_clock(small_resnet):
    _, _, _, _, paths = small_resnet
    record, layers = compile_for_npu(paths["int8"], NPU)
    assert record["status"] == "compiled" and record["reason"] is None
    assert record["cycles"] > 0 and record["clock_hz"] == 400e6
    assert record["inference_ms"] == pytest.approx(1000 * record["cycles"] / 400e6)
    # Vela's own time, at its system configuration's clock (Ethos_U55_High_End_Embedded in its vela.ini).
    assert record["vela_clock_hz"] == 500e6
    assert record["vela_inference_ms"] == pytest.approx(1000 * record["cycles"] / 500e6, rel=1e-3)
    assert record["sram_kb"] > 0 and record["flash_kb"] > 0 and record["cpu_operators"] == 0
    assert layers.startswith("Original Operator,") and "NPU" in layers


def test_a_larger_npu_takes_fewer_cycles(small_resnet):
    _, _, _, _, paths = small_resnet
    small, _ = compile_for_npu(paths["int8"], {**NPU, "accelerator": "ethos-u55-32"})
    large, _ = compile_for_npu(paths["int8"], {**NPU, "accelerator": "ethos-u55-256"})
    assert large["cycles"] < small["cycles"]


def test_a_float_model_is_left_to_the_cpu_operator_by_operator(small_resnet):
    _, _, _, _, paths = small_resnet
    record, _ = compile_for_npu(paths["fp32"], NPU)
    assert record["status"] == "compiled" and record["cpu_operators"] == record["operators"] > 0
    assert "Conv2D" in record["cpu_operator_names"]


def test_a_model_vela_cannot_compile_is_a_verdict_with_velas_reason(tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3" + b"\0" * 64)
    record, layers = compile_for_npu(broken, NPU)
    assert record["status"] == "unsupported by Vela" and layers is None
    assert record["reason"].startswith("Vela ")


@pytest.mark.parametrize(
    "change, key",
    [
        ({"accelerator": "ethos-u99"}, "accelerator"),
        ({"system_config": "My_Board"}, "system_config"),
        ({"memory_mode": "Shared"}, "memory_mode"),
    ],
)
def test_an_npu_configuration_vela_does_not_know_is_named(change, key):
    assert check_configuration(NPU, "boards[3] (grove)") == []
    (problem,) = check_configuration({**NPU, **change}, "boards[3] (grove)")
    assert problem.startswith(f"boards[3] (grove).npu.{key}: {next(iter(change.values()))!r} is not one Vela ")


def test_the_npu_job_writes_the_estimate_and_the_layer_table(small_resnet, tmp_path):
    _, _, _, _, paths = small_resnet
    variant = {"dataset": "toy", "model": "resnet_v1", "seed": 1, "scheme": "int8", "board": "ignored"}
    out, layers = tmp_path / "npu.json", tmp_path / "npu.layers.csv"
    run_npu_estimate(paths["int8"], variant, "grove", NPU, out, layers)
    record = json.loads(out.read_text())
    assert {key: record[key] for key in ("dataset", "model", "seed", "scheme", "board")} == {
        "dataset": "toy",
        "model": "resnet_v1",
        "seed": 1,
        "scheme": "int8",
        "board": "grove",
    }
    assert record["estimate"] == "Arm Vela's own estimate" and layers.read_text().startswith("Original Operator")
