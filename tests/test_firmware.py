"""Firmware bundles: generated from the flatbuffer, compiled with the host compiler and for a Cortex-M4.

What is not tested here: building against TensorFlow Lite Micro's C++ library
(its headers and kernels are not on these machines), so ``op_resolver.h`` is
checked for its operator list, not compiled.
"""

import re
import shutil
import subprocess

import numpy as np
import pytest

from tinyml_quant.conversion import convert
from tinyml_quant.firmware import (
    ALIGNMENT_BYTES,
    arena_with_margin,
    firmware_bundle,
    resolver_method,
    run_firmware_bundle,
)
from tinyml_quant.graph import operator_counts

from conftest import require
from elf import ElfObject

CROSS = "arm-none-eabi-g++"
SYMBOL = "g_toy_custom_int8_model_data"


@pytest.mark.parametrize(
    "operator, method",
    [
        ("CONV_2D", "AddConv2D"),
        ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
        ("FULLY_CONNECTED", "AddFullyConnected"),
        ("AVERAGE_POOL_2D", "AddAveragePool2D"),
        ("MEAN", "AddMean"),
        ("SOFTMAX", "AddSoftmax"),
        ("QUANTIZE", "AddQuantize"),
        ("STRIDED_SLICE", "AddStridedSlice"),
    ],
)
def test_resolver_methods_follow_tflite_micro_naming(operator, method):
    assert resolver_method(operator) == method


def test_a_custom_operator_must_be_registered_by_hand():
    with pytest.raises(ValueError, match="custom operator 'MyOp'"):
        resolver_method("CUSTOM:MyOp")


@pytest.mark.parametrize(
    ("arena", "margin", "expected"), [(1000, 10, 1104), (1024, 0, 1024), (1, 0, 16), (100, 50, 160)]
)
def test_the_arena_gets_its_margin_rounded_up_to_16_bytes(arena, margin, expected):
    assert arena_with_margin(arena, margin) == expected


@pytest.fixture(scope="module")
def variants():
    from tinyml_quant.architectures import build_model
    from tinyml_quant.training import configure_tensorflow

    configure_tensorflow(1, seed=0)
    model = build_model("custom", (16, 16, 1), 3, base_filters=4)
    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 1)).astype(np.float32)
    return {scheme: convert(model, scheme, images) for scheme in ("fp32", "int8", "int16x8")}


MICRO = {"status": "runs", "arena_bytes": 5000, "unsupported_operator": None}


@pytest.fixture(scope="module")
def bundle(variants, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    (folder / "int8.tflite").write_bytes(variants["int8"])
    (folder / "micro.json").write_text('{"status": "runs", "arena_bytes": 5000, "unsupported_operator": null}')
    from test_micro import write_prepared_dataset

    write_prepared_dataset(folder / "toy.npz", np.zeros((4, 16, 16, 1), np.uint8))
    paths = [folder / "out" / name for name in ("model_data.cc", "model_data.h", "model_settings.h", "op_resolver.h")]
    variant = {"dataset": "toy", "model": "custom", "scheme": "int8"}
    run_firmware_bundle(folder / "int8.tflite", folder / "micro.json", folder / "toy.npz", 10, variant, paths)
    return folder / "out", variants["int8"]


@pytest.mark.parametrize("scheme", ["fp32", "int8", "int16x8"])
def test_the_resolver_registers_exactly_the_models_operators(variants, scheme):
    files = firmware_bundle(variants[scheme], MICRO, ["a", "b", "c"], 10, f"g_{scheme}")
    operators = operator_counts(variants[scheme])
    registered = re.findall(r"resolver\.(Add\w+)\(\)", files["op_resolver.h"])
    assert sorted(registered) == sorted(resolver_method(operator) for operator in operators)
    assert f"tflite::MicroMutableOpResolver<{len(operators)}>" in files["op_resolver.h"]


def test_a_variant_tflite_micro_refuses_gets_no_bundle(variants):
    refused = {"status": "unsupported on TFLite Micro", "arena_bytes": None, "unsupported_operator": "DEQUANTIZE"}
    with pytest.raises(ValueError, match="unsupported on TFLite Micro \\(DEQUANTIZE\\): no firmware"):
        firmware_bundle(variants["fp32"], refused, ["a"], 10, "g_x")


def test_the_settings_hold_the_arena_with_its_margin_and_the_input_quantization(bundle):
    folder, _ = bundle
    settings = (folder / "model_settings.h").read_text()
    assert "constexpr int kMeasuredArenaBytes = 5000;" in settings
    assert f"constexpr int kTensorArenaSize = {arena_with_margin(5000, 10)};" in settings
    assert "constexpr int kInputShape[] = {1, 16, 16, 1};" in settings
    assert 'kCategoryLabels[kCategoryCount] = {"a", "b", "c", "d"};' in settings


HOST_PROGRAM = """
#include <cstdint>
#include <cstdio>
#include "model_data.h"
#include "model_settings.h"
static_assert(kTensorArenaSize % 16 == 0, "arena size is a multiple of 16");
static_assert(kTensorArenaSize >= kMeasuredArenaBytes, "margin is not negative");
int main() {
  if (reinterpret_cast<std::uintptr_t>(SYMBOL) % 16 != 0) return 2;
  std::fwrite(SYMBOL, 1, SYMBOL_len, stdout);
  return 0;
}
"""


def test_the_host_compiler_builds_the_bundle_and_the_array_is_the_tflite_file(bundle, tmp_path):
    folder, flatbuffer = bundle
    require(shutil.which("g++"), "no host C++ compiler (g++)", "make system-packages installs it")
    (tmp_path / "main.cc").write_text(HOST_PROGRAM.replace("SYMBOL", SYMBOL))
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-Wall",
            "-Werror",
            "-I",
            str(folder),
            str(tmp_path / "main.cc"),
            str(folder / "model_data.cc"),
            "-o",
            str(tmp_path / "dump"),
        ],
        check=True,
    )
    dumped = subprocess.run([str(tmp_path / "dump")], capture_output=True, check=True).stdout
    assert dumped == flatbuffer


def cross_compile(source, include, output):
    subprocess.run(
        [
            CROSS,
            "-mcpu=cortex-m4",
            "-mthumb",
            "-Os",
            "-std=c++17",
            "-fdata-sections",
            "-Wall",
            "-Werror",
            "-I",
            str(include),
            "-c",
            str(source),
            "-o",
            str(output),
        ],
        check=True,
    )
    return ElfObject(output.read_bytes())


def check_cortex_m4_object(folder, flatbuffer, symbol, tmp_path):
    """Compile ``model_data.cc`` for a Cortex-M4; return the flash it takes after checking bytes and alignment."""
    require(shutil.which(CROSS), "no Arm embedded cross-compiler", "make system-packages installs gcc-arm-none-eabi")
    elf = cross_compile(folder / "model_data.cc", folder, tmp_path / f"{symbol}.o")
    array = elf.symbol(symbol)
    section = elf.sections[array.section]
    assert elf.bits == 32
    assert elf.bytes_of(array) == flatbuffer and array.size == len(flatbuffer)
    assert section.alignment >= ALIGNMENT_BYTES and array.value % ALIGNMENT_BYTES == 0
    assert int.from_bytes(elf.bytes_of(elf.symbol(f"{symbol}_len")), "little") == len(flatbuffer)
    return elf.allocated_bytes()


def test_the_arm_cross_compiler_builds_the_array_for_a_cortex_m4(bundle, tmp_path):
    folder, flatbuffer = bundle
    flash = check_cortex_m4_object(folder, flatbuffer, SYMBOL, tmp_path)
    # The array and its 4-byte length, nothing else, and no more padding than the alignment asks.
    assert len(flatbuffer) + 4 <= flash < len(flatbuffer) + 4 + 2 * ALIGNMENT_BYTES
    (tmp_path / "settings.cc").write_text('#include "model_settings.h"\nint arena() { return kTensorArenaSize; }\n')
    cross_compile(tmp_path / "settings.cc", folder, tmp_path / "settings.o")
