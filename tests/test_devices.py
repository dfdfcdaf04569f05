"""Board profiles and fit verdicts: pure arithmetic, no TensorFlow."""

import pandas as pd
import pytest
import yaml

from tinyml_quant.devices import (
    KB,
    board_from_config,
    boards_from_config,
    fit_verdict,
    run_fit_table,
    vela_failure_cell,
)

from conftest import REPOSITORY

ENTRY = {
    "name": "test_board",
    "cpu": "Cortex-M4F",
    "clock_mhz": 100,
    "flash_kb": 1024,
    "ram_kb": 256,
    "flash_allowance_kb": 150,
    "ram_allowance_kb": 32,
}
NPU = {
    "accelerator": "ethos-u55-128",
    "clock_mhz": 500,
    "system_config": "Ethos_U55_High_End_Embedded",
    "memory_mode": "Shared_Sram",
}
CORTEX = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["cortex_m_latency"]
BOARD = board_from_config(ENTRY)


@pytest.mark.parametrize(
    ("file_bytes", "arena_bytes", "verdict"),
    [
        (100 * KB, 100 * KB, "fits"),
        (874 * KB, 224 * KB, "fits"),  # exactly at both limits
        (874 * KB + 1, 224 * KB, "flash +1 KB"),  # one byte over reads as 1 KB, never 0 KB
        (900 * KB, 10 * KB, "flash +26 KB"),
        (10 * KB, 300 * KB, "RAM +76 KB"),
        (874 * KB, 224 * KB + 1, "RAM +1 KB"),
        (1000 * KB, 1000 * KB, "flash +126 KB, RAM +776 KB"),
    ],
)
def test_fit_verdict(file_bytes, arena_bytes, verdict):
    assert fit_verdict(file_bytes, arena_bytes, "runs", BOARD) == verdict


def test_unsupported_variant_needs_no_arena():
    assert fit_verdict(20 * KB, None, "unsupported on TFLite Micro", BOARD) == "unsupported"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((10, 10, "crashed", BOARD), "unknown TFLite Micro status"),
        ((10, None, "runs", BOARD), "^arena_bytes must be"),
        ((-1, 10, "runs", BOARD), "^file_bytes must be"),
        ((10, 10.5, "runs", BOARD), "^arena_bytes must be"),
        ((True, 10, "runs", BOARD), "^file_bytes must be"),
    ],
)
def test_bad_input_is_a_value_error(arguments, message):
    with pytest.raises(ValueError, match=message):
        fit_verdict(*arguments)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ram_allowance_kb": 300}, r"boards\[0\] \(test_board\).ram_allowance_kb: 300 is more than ram_kb 256"),
        ({"flash_allowance_kb": 1025}, r"flash_allowance_kb: 1025 is more than flash_kb 1024"),
        ({"ram_kb": -1}, r"ram_kb: must be a non-negative integer"),
        ({"ram_kb": 1.5}, r"ram_kb: must be a non-negative integer"),
    ],
)
def test_a_board_that_cannot_be_is_refused_naming_the_key(change, message):
    with pytest.raises(ValueError, match=message):
        boards_from_config([{**ENTRY, **change}])


def test_a_board_entry_is_named_by_position_and_takes_its_defaults():
    with pytest.raises(ValueError, match=r"^boards\[0\] \(\?\): name is missing$"):
        board_from_config({key: value for key, value in ENTRY.items() if key != "name"})
    with pytest.raises(ValueError, match=r"^boards\[1\] \(second\).ram_kb: must be a non-negative integer"):
        boards_from_config([ENTRY, {**ENTRY, "name": "second", "ram_kb": -1}])
    board = board_from_config({**ENTRY, "flash_allowance_kb": 0, "ram_allowance_kb": 0})  # no allowance is fine
    assert board.label == "test_board" and board.budget_bytes("flash") == 1024 * KB


def test_a_board_at_exactly_its_memory_is_allowed():
    board = board_from_config({**ENTRY, "ram_allowance_kb": 256, "flash_allowance_kb": 1024})
    assert board.budget_bytes("ram") == 0 and board.budget_bytes("flash") == 0
    assert fit_verdict(0, 0, "runs", board) == "fits" and fit_verdict(1, 0, "runs", board) == "flash +1 KB"


def test_an_empty_board_list_and_a_repeated_name_are_refused():
    with pytest.raises(ValueError, match="^boards: the list is empty; the fit table needs at least one board$"):
        boards_from_config([])
    with pytest.raises(ValueError, match=r"boards\[1\].name: 'test_board' is used by an earlier board"):
        boards_from_config([ENTRY, {**ENTRY, "label": "another"}])


def configured_boards():
    entries = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["boards"]
    return entries, boards_from_config(entries)


def test_configured_boards_are_valid_and_sized_as_their_datasheets_say():
    _, boards = configured_boards()
    sizes = {name: (board.flash_bytes // KB, board.ram_bytes // KB, board.clock_mhz) for name, board in boards.items()}
    assert sizes == {
        "arduino_nano_33_ble_sense": (1024, 256, 64),
        "stm32f746g_disco": (1024, 320, 216),
        "esp32": (4096, 520, 240),
        "raspberry_pi_pico": (2048, 264, 133),
        "nucleo_l4r5zi": (2048, 640, 120),
        "nucleo_f401re": (512, 96, 84),
        "nrf52_dk": (512, 64, 64),
        "alif_e7_high_performance": (5632, 13824, 400),
        "alif_e7_high_efficiency": (5632, 13824, 160),
        "grove_vision_ai_v2": (16384, 2457, 400),
    }
    # At least two boards where an int8 variant's memory decides: at most 128 KB of RAM and 512 KB of flash.
    small = [board for board in boards.values() if board.ram_bytes <= 128 * KB and board.flash_bytes <= 512 * KB]
    assert len(small) >= 2
    accelerators = {board.npu["accelerator"] for board in boards.values() if board.npu}
    assert accelerators == {"ethos-u55-256", "ethos-u55-128", "ethos-u55-64"}


def test_verdicts_on_every_configured_board():
    _, boards = configured_boards()
    assert fit_verdict(300 * KB, 200 * KB, "runs", boards["esp32"]) == "fits"
    assert fit_verdict(300 * KB, 200 * KB, "runs", boards["arduino_nano_33_ble_sense"]) == "fits"
    assert fit_verdict(300 * KB, 250 * KB, "runs", boards["arduino_nano_33_ble_sense"]) == "RAM +26 KB"
    assert fit_verdict(300 * KB, 40 * KB, "runs", boards["nrf52_dk"]) == "RAM +8 KB"


def results_table(tmp_path):
    results = pd.DataFrame(
        {
            "dataset": ["toy"] * 3 + ["another"] * 2,
            "dataset_name": ["toy (test)"] * 3 + ["another"] * 2,
            "model": ["custom"] * 3 + ["resnet_v1"] * 2,
            "seed": [1] * 5,
            "scheme": ["int8", "float16", "fp32", "int8", "int8_lut"],
            "status": ["converted"] * 4 + ["not converted"],
            "reason": [None] * 4 + ["TFLite Micro compression: the compressor refused it"],
            "file_bytes": [40 * KB, 50 * KB, 2000 * KB, 1000, None],
            "arena_bytes": [30 * KB, None, 30 * KB, 300 * KB, None],
            "tflm_status": ["runs", "unsupported on TFLite Micro", "runs", "runs", "not converted"],
            "tflm_unsupported_operator": [None, "DEQUANTIZE", None, None, None],
            "macs": [1_000_000, 1_000_000, 1_000_000, 2_000_000, None],
        }
    )
    results.to_csv(tmp_path / "results.csv", index=False)
    return tmp_path / "results.csv"


def test_the_fit_table_of_a_board_without_npu_and_its_cortex_m_range(tmp_path):
    entry = {**ENTRY, "label": "Test board"}
    table = run_fit_table(results_table(tmp_path), [], [entry], CORTEX, tmp_path / "fit.csv", tmp_path / "fit.md")
    assert table.verdict.tolist() == [
        "fits",
        "unsupported (DEQUANTIZE)",
        "flash +1126 KB",
        "RAM +76 KB",
        "not converted",
    ]
    # What the variant lacks (negative: room left), for the per-board answer: file and arena against the budgets.
    assert table.flash_over_kb[[0, 2, 3]].tolist() == [40 - 874, 2000 - 874, 1000 / KB - 874]
    assert table.ram_over_kb[[0, 2, 3]].tolist() == [30 - 224, 30 - 224, 300 - 224]
    assert table.flash_over_kb[[1, 4]].isna().all()  # no arena, or no file: nothing to count
    from tinyml_quant.cortex_m import variant_range_ms

    low, high = variant_range_ms(1_000_000, 100, CORTEX)
    assert (table.latency_low_ms[0], table.latency_high_ms[0]) == pytest.approx((low, high))
    assert pd.isna(table.latency_low_ms[1])  # TFLite Micro does not run it: no estimate
    # The range is MLPerf Tiny's int8 models': fp32 gets none.
    assert pd.isna(table.latency_low_ms[2]) and table.latency_source[2] == "no estimate: the range is from int8 models"
    assert table.latency_source[0] == f"estimate from MLPerf Tiny's cycles per MAC on the {CORTEX['board']}, at 100 MHz"
    markdown = (tmp_path / "fit.md").read_text()
    assert "**Every latency here is an estimate, not a measurement**" in markdown
    # Whole KB, and the latency labelled an estimate with its source (milliseconds by its own formula).
    cell = f"fits; {low:.2g}-{high:.2g} ms (Cortex-M range, est.)"
    assert f"| custom  | int8     | 40           | 30                | {cell}" in markdown
    assert table.latency_kind[0] == "Cortex-M range, MLPerf Tiny-derived" and not table.latency_lower_bound[0]
    # A cell that shortens a tool's words has them under the table.
    assert "- resnet_v1 int8_lut on Test board: TFLite Micro compression: the compressor refused it" in markdown
    assert pd.read_csv(tmp_path / "fit.csv").verdict.tolist() == table.verdict.tolist()


def test_an_npu_board_takes_velas_memory_and_time(tmp_path):
    npu_board = {**ENTRY, "name": "npu_board", "label": "NPU board", "npu": NPU}
    estimate = {
        "dataset": "toy",
        "model": "custom",
        "seed": 1,
        "scheme": "int8",
        "board": "npu_board",
        "status": "compiled",
        "sram_kb": 100.0,
        "flash_kb": 900.0,
        "inference_ms": 1.5,
        "clock_hz": 500e6,
    }
    refused = {**estimate, "dataset": "another", "model": "resnet_v1"}
    refused.update(status="unsupported by Vela", reason="Vela ended with signal 8: Tensor 'x' has a dynamic signature")
    # TFLite Micro's compressed file of this LUT variant was not made; Vela compiled its binned model.
    binned = {**estimate, "dataset": "another", "model": "resnet_v1", "scheme": "int8_lut", "flash_kb": 100.0}
    paths = []
    for number, record in enumerate((estimate, refused, binned)):
        paths.append(tmp_path / f"npu{number}.json")
        paths[-1].write_text(__import__("json").dumps(record))
    table = run_fit_table(
        results_table(tmp_path), paths, [npu_board], CORTEX, tmp_path / "fit.csv", tmp_path / "fit.md"
    )
    assert table.verdict.tolist() == [
        "flash +26 KB",
        "not for the NPU (float)",
        "not for the NPU (float)",
        "Vela crashed (SIGFPE)",
        "fits",
    ]
    assert table.reason[3] == refused["reason"]
    assert (table.flash_need_kb[4], table.ram_need_kb[4], table.memory_source[4]) == (100.0, 100.0, "Vela")
    assert "fits; 1.5 ms (Vela est.)" in (tmp_path / "fit.md").read_text()
    assert table.latency_low_ms[4] == 1.5
    assert table.latency_low_ms[0] == 1.5
    assert table.latency_source[0] == "Vela's cycles at the board's 500 MHz NPU clock"
    assert table.target[0] == "Cortex-M4F + ethos-u55-128"


def test_no_cortex_m_estimate_for_a_processor_the_range_was_not_measured_on(tmp_path):
    pico = {**ENTRY, "cpu": "Cortex-M0+", "label": "Pico"}
    table = run_fit_table(results_table(tmp_path), [], [pico], CORTEX, tmp_path / "fit.csv", tmp_path / "fit.md")
    assert table.latency_low_ms.isna().all()
    assert table.latency_source[0] == f"no estimate for a Cortex-M0+ (the range is from the {CORTEX['board']})"


@pytest.mark.parametrize(
    ("reason", "cell"),
    [
        ("Vela ended with signal 8: Tensor 'serving_default_image:0' has a dynamic signature", "Vela crashed (SIGFPE)"),
        ("Vela ended with signal 11: ", "Vela crashed (SIGSEGV)"),
        ("Vela ended with exit status 2: error: unknown operator", "Vela failed (exit 2)"),
        ("Vela did not finish in 600 s", "Vela timed out"),
    ],
)
def test_a_vela_failure_is_a_short_cell_naming_how_it_ended(reason, cell):
    assert vela_failure_cell(reason) == cell


def test_the_cortex_m_range_is_a_lower_bound_where_weights_are_decoded(tmp_path):
    results = pd.DataFrame(
        {
            "dataset": ["toy"] * 3,
            "dataset_name": ["toy"] * 3,
            "model": ["custom"] * 3,
            "seed": [1] * 3,
            "scheme": ["int8", "int4", "int8_lut"],
            "status": ["converted"] * 3,
            "file_bytes": [40 * KB, 30 * KB, 20 * KB],
            "arena_bytes": [30 * KB] * 3,
            "tflm_status": ["runs"] * 3,
            "macs": [1_000_000] * 3,
        }
    )
    results.to_csv(tmp_path / "results.csv", index=False)
    table = run_fit_table(tmp_path / "results.csv", [], [ENTRY], CORTEX, tmp_path / "fit.csv", tmp_path / "fit.md")
    # The same MACs give the same int8 cycles per MAC; int4 and LUT variants spend more, not counted.
    assert table.latency_low_ms.nunique() == 1
    assert table.latency_lower_bound.tolist() == [False, True, True]
    assert table.latency_source[1].endswith("a lower bound: int8's cycles per MAC leave out decoding the weights")
    markdown = (tmp_path / "fit.md").read_text()
    assert markdown.count("fits; at least ") == 2 and "For them the range is a lower bound" in markdown
