"""Board profiles and fit verdicts: pure arithmetic, no TensorFlow."""

import pandas as pd
import pytest
import yaml

from tinyml_quant.devices import KB, board_from_config, boards_from_config, fit_verdict, run_fit_table

from conftest import REPOSITORY

ENTRY = {"name": "test_board", "flash_kb": 1024, "ram_kb": 256, "flash_allowance_kb": 150, "ram_allowance_kb": 32}
BOARD = board_from_config(ENTRY)


@pytest.mark.parametrize(
    ("file_bytes", "arena_bytes", "verdict"),
    [
        (100 * KB, 100 * KB, "fits"),
        (874 * KB, 224 * KB, "fits"),  # exactly at both limits
        (874 * KB + 1, 224 * KB, "over flash by 1 KB"),  # one byte over reads as 1 KB, never 0 KB
        (900 * KB, 10 * KB, "over flash by 26 KB"),
        (10 * KB, 300 * KB, "over RAM by 76 KB"),
        (874 * KB, 224 * KB + 1, "over RAM by 1 KB"),
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
    assert fit_verdict(0, 0, "runs", board) == "fits" and fit_verdict(1, 0, "runs", board) == "over flash by 1 KB"


def test_an_empty_board_list_and_a_repeated_name_are_refused():
    with pytest.raises(ValueError, match="^boards: the list is empty; the fit table needs at least one board$"):
        boards_from_config([])
    with pytest.raises(ValueError, match=r"boards\[1\].name: 'test_board' is used by an earlier board"):
        boards_from_config([ENTRY, {**ENTRY, "label": "another"}])


def configured_boards():
    entries = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())["boards"]
    return entries, boards_from_config(entries)


def test_configured_boards_are_valid_and_sized_as_documented():
    _, boards = configured_boards()
    sizes = {name: (board.flash_bytes // KB, board.ram_bytes // KB) for name, board in boards.items()}
    assert sizes == {
        "arduino_nano_33_ble_sense": (1024, 256),
        "stm32f746g_disco": (1024, 320),
        "esp32": (4096, 520),
        "raspberry_pi_pico": (2048, 264),
    }


def test_verdicts_on_every_configured_board():
    _, boards = configured_boards()
    assert fit_verdict(300 * KB, 200 * KB, "runs", boards["esp32"]) == "fits"
    assert fit_verdict(300 * KB, 200 * KB, "runs", boards["arduino_nano_33_ble_sense"]) == "fits"
    assert fit_verdict(300 * KB, 250 * KB, "runs", boards["arduino_nano_33_ble_sense"]) == "over RAM by 26 KB"


def test_fit_table_from_the_results_table(tmp_path):
    results = pd.DataFrame(
        {
            "dataset_name": ["toy (test)"] * 3 + ["another"],
            "model": ["custom"] * 3 + ["resnet_v1"],
            "scheme": ["int8", "float16", "fp32", "int8"],
            "file_bytes": [40 * KB, 50 * KB, 2000 * KB, 1000],
            "arena_bytes": [30 * KB, None, 30 * KB, 300 * KB],
            "tflm_status": ["runs", "unsupported on TFLite Micro", "runs", "runs"],
        }
    )
    results.to_csv(tmp_path / "results.csv", index=False)
    entry = {**ENTRY, "label": "Test board"}
    table = run_fit_table(tmp_path / "results.csv", [entry], tmp_path / "fit.csv", tmp_path / "fit.md")
    expected = pd.DataFrame(
        {
            "dataset_name": ["toy (test)"] * 3 + ["another"],
            "model": ["custom"] * 3 + ["resnet_v1"],
            "scheme": ["int8", "float16", "fp32", "int8"],
            "flash_kb": [40.0, 50.0, 2000.0, 1000 / 1024],
            "arena_kb": [30.0, None, 30.0, 300.0],
            "Test board": ["fits", "unsupported", "over flash by 1126 KB", "over RAM by 76 KB"],
        }
    )
    pd.testing.assert_frame_equal(table, expected)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "fit.csv"), expected)
    # The whole report, written out here rather than built from the code under test:
    # datasets in name order, KB to one decimal, "-" for a variant without an arena.
    assert (tmp_path / "fit.md").read_text() == (
        "# Will it fit? Every TFLite variant on every board\n\n"
        "A variant fits when its `.tflite` file + the flash allowance <= flash and its TFLite Micro arena "
        "+ the RAM allowance <= RAM (KB = 1024 bytes).\n\n"
        "| board | flash (KB) | RAM (KB) | flash allowance (KB) | RAM allowance (KB) |\n"
        "| --- | ---: | ---: | ---: | ---: |\n"
        "| Test board | 1024 | 256 | 150 | 32 |\n"
        "\n## another\n\n"
        "| model     | scheme   |   flash (KB) |   arena (KB) | Test board        |\n"
        "|:----------|:---------|-------------:|-------------:|:------------------|\n"
        "| resnet_v1 | int8     |          1.0 |        300.0 | over RAM by 76 KB |\n"
        "\n## toy (test)\n\n"
        "| model   | scheme   |   flash (KB) |   arena (KB) | Test board            |\n"
        "|:--------|:---------|-------------:|-------------:|:----------------------|\n"
        "| custom  | int8     |         40.0 |         30.0 | fits                  |\n"
        "| custom  | float16  |         50.0 |            - | unsupported           |\n"
        "| custom  | fp32     |       2000.0 |         30.0 | over flash by 1126 KB |\n"
    )


def test_two_boards_with_one_name_are_refused(tmp_path):
    entries, _ = configured_boards()
    pd.DataFrame(columns=["dataset_name", "model", "scheme", "file_bytes", "arena_bytes", "tflm_status"]).to_csv(
        tmp_path / "results.csv", index=False
    )
    with pytest.raises(ValueError, match="is used by an earlier board"):
        run_fit_table(tmp_path / "results.csv", entries + entries[:1], tmp_path / "fit.csv", tmp_path / "fit.md")
