"""Board profiles and fit verdicts: pure arithmetic, no TensorFlow."""

import pytest

import pandas as pd
import yaml

from conftest import REPOSITORY
from tinyml_quant.devices import KB, board_from_config, fit_verdict, fit_verdicts, run_fit_table

BOARD = {
    "name": "test_board",
    "flash_bytes": 1024 * KB,
    "ram_bytes": 256 * KB,
    "flash_allowance_bytes": 150 * KB,
    "ram_allowance_bytes": 32 * KB,
}


@pytest.mark.parametrize(
    ("file_bytes", "arena_bytes", "verdict"),
    [
        (100 * KB, 100 * KB, "fits"),
        (874 * KB, 224 * KB, "fits"),  # exactly at both limits
        (874 * KB + 1, 224 * KB, "over flash by 1 KB"),  # one byte over reads as 1 KB, never 0 KB
        (900 * KB, 10 * KB, "over flash by 26 KB"),
        (10 * KB, 300 * KB, "over RAM by 76 KB"),
        (1000 * KB, 1000 * KB, "over flash by 126 KB and over RAM by 776 KB"),
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
        ((10, None, "runs", BOARD), "arena_bytes"),
        ((-1, 10, "runs", BOARD), "file_bytes"),
        ((10, 10, "runs", {**BOARD, "name": "Bad Name"}), "must match"),
        ((10, 10, "runs", {key: value for key, value in BOARD.items() if key != "ram_bytes"}), "lacks"),
        ((10, 10, "runs", {**BOARD, "ram_allowance_bytes": 300 * KB}), "exceeds"),
    ],
)
def test_bad_input_is_a_value_error(arguments, message):
    with pytest.raises(ValueError, match=message):
        fit_verdict(*arguments)


def configured_boards():
    entries = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["boards"]
    return entries, {entry["name"]: board_from_config(entry) for entry in entries}


def test_configured_boards_are_valid_and_sized_as_documented():
    _, boards = configured_boards()
    sizes = {name: (board["flash_bytes"] // KB, board["ram_bytes"] // KB) for name, board in boards.items()}
    assert sizes == {
        "arduino_nano_33_ble_sense": (1024, 256),
        "stm32f746g_disco": (1024, 320),
        "esp32": (4096, 520),
        "raspberry_pi_pico": (2048, 264),
    }


def test_verdicts_on_every_configured_board():
    _, boards = configured_boards()
    verdicts = fit_verdicts(300 * KB, 200 * KB, "runs", boards)
    assert verdicts["esp32"] == "fits"
    assert verdicts["arduino_nano_33_ble_sense"] == "fits"
    assert fit_verdicts(300 * KB, 250 * KB, "runs", boards)["arduino_nano_33_ble_sense"] == "over RAM by 26 KB"


def test_fit_table_from_the_results_table(tmp_path):
    results = pd.DataFrame(
        {
            "dataset_name": ["toy (test)"] * 3,
            "model": ["custom"] * 3,
            "scheme": ["int8", "float16", "fp32"],
            "file_bytes": [40 * KB, 50 * KB, 2000 * KB],
            "arena_bytes": [30 * KB, None, 30 * KB],
            "tflm_status": ["runs", "unsupported on TFLite Micro", "runs"],
        }
    )
    results.to_csv(tmp_path / "results.csv", index=False)
    entry = {"name": "test_board", "label": "Test board", "flash_kb": 1024, "ram_kb": 256,
             "flash_allowance_kb": 150, "ram_allowance_kb": 32}  # fmt: skip
    table = run_fit_table(tmp_path / "results.csv", [entry], tmp_path / "fit.csv", tmp_path / "fit.md")
    assert table["Test board"].tolist() == ["fits", "unsupported", "over flash by 1126 KB"]
    assert pd.read_csv(tmp_path / "fit.csv")["Test board"].tolist() == table["Test board"].tolist()
    markdown = (tmp_path / "fit.md").read_text()
    assert "## toy (test)" in markdown and "over flash by 1126 KB" in markdown and "| Test board | 1024 | 256 |" in markdown


def test_two_boards_with_one_name_are_refused(tmp_path):
    entries, _ = configured_boards()
    pd.DataFrame(columns=["dataset_name", "model", "scheme", "file_bytes", "arena_bytes", "tflm_status"]).to_csv(
        tmp_path / "results.csv", index=False
    )
    with pytest.raises(ValueError, match="two boards share a name"):
        run_fit_table(tmp_path / "results.csv", entries + entries[:1], tmp_path / "fit.csv", tmp_path / "fit.md")
