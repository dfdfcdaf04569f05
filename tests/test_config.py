"""The configuration: its schema, the checks a schema cannot make, and the merged training recipe.

Each refusal is tested by the bad value getting refused with a message naming
the key, here in-process (the schema through Snakemake's own ``validate``,
then ``tinyml_quant.config.check`` as ``rules/common.smk`` calls them), and once
through Snakemake itself (``test_workflow.py``).
"""

import inspect
import shutil

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from tinyml_quant import config as study
from tinyml_quant.architectures import ARCHITECTURES, custom, mobilenets, resnet_v1, resnet_v2
from tinyml_quant.schemes import WEIGHT_ALGORITHMS

from conftest import REPOSITORY

SCHEMA = REPOSITORY / "config" / "schema.yaml"
DEFAULTS = yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text())


def merged(change):
    """The default config with ``change`` merged over it, as Snakemake merges a --configfile."""
    return study.merged(DEFAULTS, change)


def checked(change, tmp_path=None, environ=None):
    config = merged(change)
    validate(config, str(SCHEMA))
    return study.check(study.resolve(config, tmp_path or REPOSITORY, tmp_path or REPOSITORY, environ or {}))


def test_the_default_config_and_the_presets_pass():
    for name in ("smoke", "paper", "seeds"):
        checked(yaml.safe_load((REPOSITORY / "config" / f"{name}.yaml").read_text()))
    assert checked({})["study"] == "default"


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"training": {"epochs": 0}}, "training.epochs: 0 is less than the minimum of 1"),
        ({"training": {"epochs": "three"}}, "training.epochs: 'three' is not of type 'integer'"),
        ({"training": {"batch_size": -32}}, "training.batch_size: -32 is less than the minimum of 1"),
        (
            {"conversion": {"int8": {"calibration_images": -5}}},
            "conversion.int8.calibration_images: -5 is less than the minimum of 1",
        ),
        (
            {"training": {"learning_rates": 0.1}},
            "training.learning_rates: not a setting; did you mean 'learning_rate'?",
        ),
        (
            {"training": {"per_model": {"custom": {"epoch": 2}}}},
            "training.per_model.custom.epoch: not a setting; did you mean 'epochs'?",
        ),
        (
            {"training": {"per_dataset": {"mnist": {"per_model": {"custom": {"optimizer": "lion"}}}}}},
            "training.per_dataset.mnist.per_model.custom.optimizer: 'lion' is not one of ['sgd', 'adam']",
        ),
        ({"training": {"backend": "pytorch"}}, "training.backend: 'pytorch' is not one of ['tensorflow', 'jax']"),
        (
            {"training": {"per_model": {"resnet8": {"accelerator": "tpu"}}}},
            "training.per_model.resnet8.accelerator: 'tpu' is not one of ['auto', 'cpu', 'gpu']",
        ),
        ({"trainning": {"epochs": 1}}, "trainning: not a setting; did you mean 'training'?"),
        ({"zzz": 1}, "zzz: not a setting; known here: ['architectures', 'boards',"),
        ({"models": []}, "models: [] should be non-empty"),
        ({"models": ["../resnet_v1"]}, "models.0: '../resnet_v1' does not match"),
        ({"datasets": ["mnist/extra"]}, "datasets.0: 'mnist/extra' does not match"),
        ({"study": "My Study"}, "study: 'My Study' does not match"),
        (
            {"architectures": {"mobilenet_v2": {"stem_stride": 3}}},
            "architectures.mobilenet_v2.stem_stride: 3 is not one",
        ),
        ({"boards": []}, "boards: [] should be non-empty"),
        ({"seeds": []}, "seeds: [] should be non-empty"),
        ({"seeds": [42, 42]}, "seeds: [42, 42] has non-unique elements"),
        ({"seeds": [1.5]}, "seeds.0: 1.5 is not of type 'integer'"),
        ({"seeds": ["42"]}, "seeds.0: '42' is not of type 'integer'"),
        ({"conversion": {"calibration_sweep": [0]}}, "conversion.calibration_sweep.0: 0 is less than the minimum of 1"),
        (
            {"conversion": {"int8_lut": {"values_per_channel": 129}}},
            "conversion.int8_lut.values_per_channel: 129 is greater than the maximum of 128",
        ),
        (
            {"conversion": {"int4": {"weight_algorithm": "gptq"}}},
            "conversion.int4.weight_algorithm: 'gptq' is not one of ['min_max', 'octav', 'mse']",
        ),
        (
            {"conversion": {"int4": {"weight_algorithms": "octav"}}},
            "conversion.int4.weight_algorithms: not a setting; did you mean 'weight_algorithm'?",
        ),
        (
            {"conversion": {"int8": {"weight_algorithm": "octav"}}},
            "conversion.int8.weight_algorithm: not a setting",
        ),
        ({"qat": {"epochs": -1}}, "qat.epochs: -1 is less than the minimum of 0"),
        ({"qat": {"learning_rate": 0}}, "qat.learning_rate: 0 is less than or equal to the minimum of 0"),
        ({"qat": {"threshold_points": "always"}}, "qat.threshold_points: 'always' is not of type 'number', 'null'"),
        ({"qat": {"epoch": 3}}, "qat.epoch: not a setting; did you mean 'epochs'?"),
        ({"qat": {"models": "custom"}}, "qat.models: 'custom' is not of type 'array', 'null'"),
        ({"image_folders": {"parts": {"source": "x.zip", "image_size": [32]}}}, "image_folders.parts.image_size: [32]"),
        ({"trained_models": {"mine": {"file": "m.keras"}}}, "trained_models.mine: 'dataset' is a required property"),
    ],
)
def test_schema_refuses_bad_values_naming_the_key_in_one_line(change, problem):
    config = merged(change)
    with pytest.raises(study.ConfigError) as raised:
        study.check_schema(config, yaml.safe_load(SCHEMA.read_text()))
    lines = str(raised.value).splitlines()
    assert lines[0] == "invalid configuration:" and len(lines) == 2
    assert lines[1].strip().startswith(problem)
    with pytest.raises(WorkflowError):  # Snakemake's own check of the same schema agrees
        validate(config, str(SCHEMA))


@pytest.mark.parametrize(
    "change, culprit",
    [
        ({"models": ["resnet_v1", "vgg"]}, "models: 'vgg' is neither built-in"),
        ({"datasets": ["mnist", "svhn"]}, "datasets: 'svhn' is neither built-in"),
        ({"schemes": ["fp32", "binary"]}, "schemes: 'binary' is not a scheme; known: "),
        ({"schemes": ["fp32", "int8_lt"]}, "schemes: 'int8_lt' is not a scheme; did you mean 'int8_lut'? known: "),
        ({"schemes": ["fp32", "int8_lut"]}, "schemes: 'int8_lut' bins the 'int8' variant's weights; list 'int8' too"),
        (
            {"schemes": ["fp32", "int4_qat"]},
            "schemes: 'int4_qat' is fine-tuned only where 'int4' loses accuracy; list 'int4' too",
        ),
        ({"qat": {"models": ["custom", "resnet"]}}, "qat.models: 'resnet' is not a built-in or declared model"),
        (
            {"conversion": {"int4": {"calibration_images": 60_001, "calibration_seed": 0}}},
            "conversion.int4.calibration_images: 60001 is more than the 50000 training images of cifar10",
        ),
        (  # int4's algorithm twins are calibrated with int4's settings: that key is named
            {
                "schemes": ["fp32", "int8", "int4_octav", "int4_mse"],
                "conversion": {"int4": {"calibration_images": 60_001}},
            },
            "conversion.int4.calibration_images: 60001 is more than the 50000 training images of cifar10",
        ),
        (
            {"data": {"max_train_images": 300}, "conversion": {"calibration_sweep": [1, 301]}},
            "conversion.calibration_sweep: 301 is more than the 300 training images of mnist",
        ),
        (
            {
                "boards": [
                    {
                        "name": "npu_board",
                        "cpu": "Cortex-M55",
                        "clock_mhz": 400,
                        "flash_kb": 1024,
                        "ram_kb": 512,
                        "flash_allowance_kb": 0,
                        "ram_allowance_kb": 0,
                        "npu": {"accelerator": "ethos-u55-96", "clock_mhz": 400, "system_config": "X"}
                        | {"memory_mode": "Shared_Sram"},
                    }
                ]
            },
            "boards[0] (npu_board).npu.accelerator: 'ethos-u55-96' is not one Vela ",
        ),
        ({"schemes": ["int8"]}, "schemes: must contain 'fp32'"),
        (
            {"conversion": {"calibration_sweep": [10, 500]}},
            "conversion.calibration_sweep: 500 is int8's own calibration size",
        ),
        ({"schemes": ["fp32", "int4"]}, "conversion.calibration_sweep: the sweep makes int8 variants; list 'int8'"),
        (
            {"architectures": {"resnet_v1": {"depth": 21}}},
            "architectures.resnet_v1.depth: resnet_v1 depth must be 6n+2",
        ),
        (
            {"architectures": {"resnet_v2": {"depth": 21}}},
            "architectures.resnet_v2.depth: resnet_v2 depth must be 9n+2",
        ),
        ({"training": {"per_model": {"vgg": {"epochs": 2}}}}, "training.per_model.vgg: not a built-in model"),
        ({"training": {"per_dataset": {"svhn": {"epochs": 2}}}}, "training.per_dataset.svhn: not a dataset"),
        (
            {"training": {"per_dataset": {"mnist": {"per_model": {"vgg": {"epochs": 2}}}}}},
            "training.per_dataset.mnist.per_model.vgg: not a built-in model",
        ),
        (
            {"boards": [{**DEFAULTS["boards"][0], "ram_allowance_kb": 300}]},
            "boards[0] (arduino_nano_33_ble_sense).ram_allowance_kb: 300 is more than ram_kb 256",
        ),
        (
            {"boards": [{**DEFAULTS["boards"][0], "flash_allowance_kb": 2000}]},
            "boards[0] (arduino_nano_33_ble_sense).flash_allowance_kb: 2000 is more than flash_kb 1024",
        ),
        ({"boards": [DEFAULTS["boards"][0], DEFAULTS["boards"][0]]}, "boards[1].name: 'arduino_nano_33_ble_sense'"),
        ({"diagnostics": {"always_recover": ["mnist/vgg"]}}, "diagnostics.always_recover: 'mnist/vgg' is not"),
        ({"dataset_models": {"svhn": ["custom"]}}, "dataset_models.svhn: not a built-in or declared dataset"),
        ({"dataset_models": {"mnist": ["vgg"]}}, "dataset_models.mnist: 'vgg' is not a built-in or declared model"),
        (
            {"dataset_models": {"mnist": ["mlperf_resnet8"]}},
            "dataset_models.mnist: names none of models ['resnet_v1', 'resnet_v2', 'resnet8', 'mobilenet_v1', "
            "'mobilenet_v2', 'custom', 'mlperf_resnet8'] that can run on mnist",
        ),
        ({"image_folders": {"mnist": {"source": "x.zip"}}}, "image_folders.mnist: the name is a built-in one"),
        ({"trained_models": {"custom": {"file": "m.keras", "dataset": "mnist"}}}, "trained_models.custom: the name"),
        ({"image_folders": {"parts": {"source": "missing.tar.gz"}}}, "image_folders.parts.source:"),
        ({"image_folders": {"parts": {"source": "http://example.org/parts.rar"}}}, "is not a .tar.gz, .tgz or .zip"),
        ({"trained_models": {"mine": {"file": "missing.keras", "dataset": "mnist"}}}, "trained_models.mine.file:"),
        (
            {"trained_models": {"mine": {"dataset": "mnist"}}},
            "trained_models.mine: give either file (your model) or published (one of ['mlperf_tiny_resnet8'])",
        ),
        (
            {"trained_models": {"mlperf_resnet8": {"file": "mine.keras"}}},
            "trained_models.mlperf_resnet8: give either file (your model) or published",
        ),
        (
            {"trained_models": {"mine": {"published": "mlperf_tiny_resnet9", "dataset": "cifar10"}}},
            "trained_models.mine.published: 'mlperf_tiny_resnet9' is not a published model; did you mean "
            "'mlperf_tiny_resnet8'? known: ['mlperf_tiny_resnet8']",
        ),
        (
            {"mlperf_reference": {"pretrained_model": "custom"}},
            "mlperf_reference.pretrained_model: 'custom' is not a published model of trained_models "
            "(['mlperf_resnet8'])",
        ),
        (
            {"trained_models": {"mlperf_resnet8": {"dataset": "mnist"}}},
            "mlperf_reference.pretrained_model: 'mlperf_resnet8' runs on 'mnist' (trained_models.mlperf_resnet8."
            "dataset), not on the benchmark's dataset 'cifar10'",
        ),
    ],
)
def test_config_checks_refuse_what_the_schema_cannot_see(change, culprit):
    with pytest.raises(study.ConfigError) as raised:
        checked(change)
    assert culprit in str(raised.value)


def test_every_problem_is_listed_in_one_error():
    with pytest.raises(study.ConfigError) as raised:
        checked({"models": ["custom", "vgg"], "datasets": ["mnist", "svhn"]})
    assert str(raised.value) == (
        "invalid configuration:\n"
        "  datasets: 'svhn' is neither built-in (['cifar10', 'mnist']) nor declared in image_folders ([])\n"
        "  models: 'vgg' is neither built-in "
        f"({sorted(ARCHITECTURES)}) nor declared in trained_models (['mlperf_resnet8'])"
    )


def test_minimal_training_settings_need_no_override_blocks():
    problems = []
    study._check_training({"training": {"epochs": 1}, "image_folders": {}}, problems)
    assert problems == []


def test_sources_the_checks_accept(tmp_path):
    (tmp_path / "parts.tgz").write_bytes(b"")
    (tmp_path / "saved" / "variables").mkdir(parents=True)
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "folder_without_model").mkdir()
    (tmp_path / "resnet.h5").write_bytes(b"")
    (tmp_path / "resnet.onnx").write_bytes(b"")
    config = checked(
        {
            "datasets": ["parts"],
            "models": ["mine"],
            "image_folders": {"parts": {"source": "parts.tgz", "sha256": "0" * 64}},  # a local archive takes one
            "trained_models": {"mine": {"file": "saved", "dataset": "parts"}},
        },
        tmp_path,
    )
    assert study.study_pairs(config) == [("parts", "mine")]
    # A Keras 2 HDF5 file (MLPerf Tiny's models) is a model file too.
    checked({"models": ["mine"], "trained_models": {"mine": {"file": "resnet.h5", "dataset": "mnist"}}}, tmp_path)
    for refused in ("folder_without_model", "resnet.onnx"):
        with pytest.raises(study.ConfigError, match=f"{refused} is neither a .keras or Keras 2 .h5 file nor a Saved"):
            checked({"models": ["mine"], "trained_models": {"mine": {"file": refused, "dataset": "mnist"}}}, tmp_path)


def test_dataset_models_narrow_one_datasets_models_and_leave_the_others_whole():
    config = checked({"dataset_models": {"mnist": ["custom", "resnet_v1"]}})
    pairs = study.study_pairs(config)
    # Of models, only those listed, in the order of models.
    assert [model for dataset, model in pairs if dataset == "mnist"] == ["resnet_v1", "custom"]
    assert [model for dataset, model in pairs if dataset == "cifar10"] == DEFAULTS["models"]
    assert len(study.study_instances(config)) == 2 + len(DEFAULTS["models"])
    # A config that narrows models keeps the preset's list, as for qat.models: a listed model the study
    # does not hold is no pair.
    narrowed = checked({"dataset_models": {"mnist": ["custom", "resnet_v1"]}, "models": ["custom", "resnet8"]})
    assert study.study_pairs(narrowed) == [("mnist", "custom"), ("cifar10", "custom"), ("cifar10", "resnet8")]


def test_no_mirror_stays_no_mirror(tmp_path):
    assert study.resolve(merged({"data": {"mirror": ""}}), tmp_path, tmp_path, {})["data"]["mirror"] == ""
    resolved = study.resolve(merged({"data": {"mirror": "m"}}), tmp_path, tmp_path, {})
    assert resolved["data"]["mirror"] == str(tmp_path / "m")


def test_a_trained_model_must_name_a_dataset_of_the_study(tmp_path):
    (tmp_path / "mine.keras").write_bytes(b"")
    change = {"models": ["mine"], "trained_models": {"mine": {"file": "mine.keras", "dataset": "cifar10"}}}
    with pytest.raises(
        study.ConfigError,
        match="trained_models.mine.dataset: 'cifar10' is not in datasets \\['mnist'\\]; the model runs on that "
        "dataset only: list it in datasets or take 'mine' out of models",
    ):
        checked({**change, "datasets": ["mnist"]}, tmp_path)
    config = checked(change, tmp_path)
    assert study.study_pairs(config) == [("cifar10", "mine")]
    assert config["trained_models"]["mine"]["file"] == str(tmp_path / "mine.keras")


def test_mlperf_tinys_pretrained_model_is_a_published_model_of_the_default_grid_on_cifar10_only(tmp_path):
    config = checked({}, tmp_path)
    assert config["trained_models"]["mlperf_resnet8"]["published"] == "mlperf_tiny_resnet8"
    assert "file" not in config["trained_models"]["mlperf_resnet8"]  # fetched by its own job, not a local path
    pairs = study.study_pairs(config)
    assert ("cifar10", "mlperf_resnet8") in pairs and ("mnist", "mlperf_resnet8") not in pairs
    assert study.published_model(config, "mlperf_resnet8") == "mlperf_tiny_resnet8"
    assert study.published_model(config, "resnet8") is None
    # Its own int8 file is evaluated under the seed the imported model appears under, the first.
    seeds = checked({"seeds": [7, 8]}, tmp_path)
    assert study.published_int8_instances(seeds) == [("cifar10", "mlperf_resnet8", "7")]
    assert study.published_int8_instances(checked({"models": ["resnet8"]}, tmp_path)) == []
    # A study without CIFAR-10 leaves it out; your own model named for a dataset not studied is refused (below).
    without = checked({"datasets": ["mnist"]}, tmp_path)
    assert "mlperf_resnet8" in without["models"] and not study.published_int8_instances(without)
    assert {model for _, model in study.study_pairs(without)} == set(ARCHITECTURES)
    # No MLPerf model named: nothing else is asked of it.
    checked({"mlperf_reference": {"pretrained_model": None}, "models": ["resnet8"]}, tmp_path)


def test_the_model_mirror_is_the_variable_then_the_setting_made_absolute(tmp_path):
    resolve = study.resolve
    assert resolve(merged({}), tmp_path, tmp_path, {})["data"]["model_mirror"] == ""
    assert resolve(merged({"data": {"model_mirror": "m"}}), tmp_path, tmp_path, {})["data"]["model_mirror"] == str(
        tmp_path / "m"
    )
    variable = {"TINYML_MODEL_MIRROR": str(tmp_path / "v")}
    assert resolve(merged({"data": {"model_mirror": "m"}}), tmp_path, tmp_path, variable)["data"]["model_mirror"] == (
        str(tmp_path / "v")
    )


def test_a_folder_source_takes_no_checksum(tmp_path):
    (tmp_path / "parts" / "train").mkdir(parents=True)
    change = {"image_folders": {"parts": {"source": "parts", "sha256": "0" * 64}}, "datasets": ["parts"]}
    with pytest.raises(study.ConfigError, match="image_folders.parts.sha256: a checksum applies to an archive"):
        checked(change, tmp_path)


def test_the_grid_pairs_built_in_models_with_every_dataset_and_trained_models_with_their_own(tmp_path):
    (tmp_path / "mine.keras").write_bytes(b"")
    (tmp_path / "parts.zip").write_bytes(b"")
    config = checked(
        {
            "datasets": ["mnist", "parts"],
            "models": ["custom", "mine"],
            "image_folders": {"parts": {"source": "parts.zip"}},
            "trained_models": {"mine": {"file": "mine.keras", "dataset": "parts"}},
        },
        tmp_path,
    )
    assert study.study_pairs(config) == [("mnist", "custom"), ("parts", "custom"), ("parts", "mine")]
    assert study.is_trained_model(config, "mine") and not study.is_trained_model(config, "custom")


def test_relative_paths_are_read_from_the_launch_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "parts.tar.gz").write_bytes(b"")
    config = checked({"image_folders": {"parts": {"source": "data/parts.tar.gz"}}, "data": {"mirror": "m"}}, tmp_path)
    assert config["image_folders"]["parts"]["source"] == str(tmp_path / "data" / "parts.tar.gz")
    assert config["data"]["mirror"] == str(tmp_path / "m")


def test_training_settings_take_the_most_specific_override():
    training = merged({"training": {"epochs": 3, "learning_rate": 0.1}})["training"]
    # Replaced, not merged: the default config's own overrides would otherwise decide.
    training["per_model"] = {"custom": {"epochs": 5, "batch_size": 64}}
    cifar10_augmentation = training["per_dataset"]["cifar10"]["augmentation"]
    training["per_dataset"] = {
        "cifar10": {"epochs": 12, "augmentation": cifar10_augmentation, "per_model": {"custom": {"epochs": 20}}}
    }
    assert study.training_settings(training, "mnist", "resnet_v1")["epochs"] == 3
    assert study.training_settings(training, "mnist", "custom")["epochs"] == 5  # the model's own wins
    assert study.training_settings(training, "cifar10", "resnet_v1")["epochs"] == 12
    custom = study.training_settings(training, "cifar10", "custom")
    assert custom["epochs"] == 20 and custom["batch_size"] == 64 and custom["learning_rate"] == 0.1
    assert "per_model" not in custom and "per_dataset" not in custom
    assert custom["augmentation"] == cifar10_augmentation != training["augmentation"]


def test_training_settings_without_overrides_are_a_copy_of_the_shared_ones():
    training = {"epochs": 3, "augmentation": {"flip": True}}
    settings = study.training_settings(training, "mnist", "custom")
    assert settings == training
    settings["augmentation"]["flip"] = False  # a job's changes stay in the job
    assert training["augmentation"] == {"flip": True}


@pytest.mark.parametrize(
    ("preset", "epochs"), [("smoke", {"mnist": 3, "cifar10": 3}), ("paper", {"mnist": 20, "cifar10": 200})]
)
def test_a_presets_epochs_reach_every_model(preset, epochs):
    # The presets are merged key by key over config.yaml, whose per-model epochs
    # would otherwise win over the preset's per-dataset ones.
    training = merged(yaml.safe_load((REPOSITORY / "config" / f"{preset}.yaml").read_text()))["training"]
    for dataset, expected in epochs.items():
        for model in ARCHITECTURES:
            assert study.training_settings(training, dataset, model)["epochs"] == expected, (dataset, model)


def test_a_config_that_is_not_yaml_names_its_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("training:\n  epochs: 3\n  batch_size: [1, 2\nplots: {}\n")
    with pytest.raises(study.ConfigError) as refused:
        study.load_yaml(path)
    assert str(refused.value) == f"{path}, line 4, column 6: not valid YAML (expected ',' or ']', but got ':')"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # The YAML reader's own error has no line mark: the file is named, and the position in the reason.
        (b"epochs: \x073\n", "{path}: not valid YAML (unacceptable character #x0007: special characters"),
        (b"epochs: \xff3\n", "{path}: not UTF-8 text ('utf-8' codec can't decode byte 0xff in position 8"),
    ],
)
def test_a_config_that_is_not_text_names_its_file(tmp_path, content, message):
    path = tmp_path / "binary.yaml"
    path.write_bytes(content)
    with pytest.raises(study.ConfigError) as refused:
        study.load_yaml(path)
    assert str(refused.value).startswith(message.format(path=path))


def test_resolving_paths_leaves_the_given_config_as_it_was(tmp_path):
    config = merged({"image_folders": {"parts": {"source": "parts.zip"}}})
    resolved = study.resolve(config, tmp_path, tmp_path, {})
    assert resolved["image_folders"]["parts"]["source"] == str(tmp_path / "parts.zip")
    assert config["image_folders"]["parts"]["source"] == "parts.zip"


def test_the_int4_twins_take_int4s_settings_with_their_own_weight_algorithm():
    int4 = yaml.safe_load(SCHEMA.read_text())["properties"]["conversion"]["properties"]["int4"]
    assert tuple(int4["properties"]["weight_algorithm"]["enum"]) == WEIGHT_ALGORITHMS
    config = checked({"conversion": {"int4": {"calibration_images": 64, "weight_algorithm": "mse"}}})
    int4_settings = {"calibration_images": 64, "calibration_seed": 0}
    assert study.conversion_settings(config, "int4") == int4_settings | {"weight_algorithm": "mse"}
    assert study.conversion_settings(config, "int4_octav") == int4_settings | {"weight_algorithm": "octav"}
    assert study.conversion_settings(config, "int4_mse") == int4_settings | {"weight_algorithm": "mse"}
    assert study.conversion_settings(config, "int8_per_tensor") == config["conversion"]["int8_per_tensor"]
    assert study.conversion_settings(config, "fp32") == {}
    assert config["conversion"]["int4"]["weight_algorithm"] == "mse"  # the config itself is left as it was


def test_the_schema_knows_exactly_the_built_in_architectures_and_their_knobs():
    schema = yaml.safe_load(SCHEMA.read_text())
    blocks = schema["properties"]["architectures"]["properties"]
    assert set(blocks) == set(ARCHITECTURES)
    builders = {
        "resnet_v1": resnet_v1.resnet_v1,
        "resnet_v2": resnet_v2.resnet_v2,
        "mobilenet_v1": mobilenets.mobilenet_v1,
        "mobilenet_v2": mobilenets.mobilenet_v2,
        "custom": custom.custom_cnn,
    }
    for name, builder in builders.items():
        block = blocks[name]
        knobs = set(schema["$defs"]["mobilenet"]["properties"]) if "$ref" in block else set(block["properties"])
        assert knobs == set(list(inspect.signature(builder).parameters)[2:]), name


def image_folder(root, counts, wrapper=None):
    """An image folder of tiny real PNGs, ``counts`` ``{split/class: images}``, optionally inside one top folder."""
    from PIL import Image

    for where, count in counts.items():
        folder = root / (wrapper or "") / where
        folder.mkdir(parents=True)
        for index in range(count):
            Image.new("L", (4, 4), index).save(folder / f"{index}.png")
    (root / (wrapper or "") / "train" / ".DS_Store").write_bytes(b"")  # a system file counts as no image
    return root


def calibration_study(source, calibration, test_fraction=None):
    entry = {"source": str(source)} | ({"test_fraction": test_fraction} if test_fraction is not None else {})
    return {
        "datasets": ["parts"],
        "image_folders": {"parts": entry},
        "schemes": ["fp32", "int8"],
        "conversion": {"int8": {"calibration_images": calibration, "calibration_seed": 0}, "calibration_sweep": []},
    }


@pytest.mark.parametrize("archive", [False, True])
def test_a_calibration_size_above_an_image_folders_training_split_is_refused_before_any_job(tmp_path, archive):
    """The issue's study: 450 training images and the default 500 failed four conversion jobs, at run time."""
    from tinyml_quant.readers import read_image_folder

    source = image_folder(tmp_path / "parts", {"train/ok": 9, "train/dent": 6, "test/ok": 2, "test/dent": 2})
    if archive:  # a .zip names its members in its directory: counted without reading an image
        shutil.make_archive(str(tmp_path / "parts"), "zip", tmp_path, "parts")
        source = tmp_path / "parts.zip"
    train = len(read_image_folder(source)[0]["train"][1])  # what the workflow will prepare
    assert train == 15
    with pytest.raises(study.ConfigError) as raised:
        checked(calibration_study(source, train + 1), tmp_path)
    assert "conversion.int8.calibration_images: 16 is more than the 15 training images of parts; lower it" in str(
        raised.value
    )
    checked(calibration_study(source, train), tmp_path)


def test_the_check_counts_the_test_split_a_folder_without_one_carves_out(tmp_path):
    """No test/: 0.25 of 14 images (3.5, rounded to even: 4) become the test split, 10 stay for calibration."""
    source = image_folder(tmp_path / "parts", {"train/ok": 8, "train/dent": 6}, wrapper="wrapped")
    with pytest.raises(study.ConfigError, match="11 is more than the 10 training images of parts"):
        checked(calibration_study(source, 11, test_fraction=0.25), tmp_path)
    checked(calibration_study(source, 10, test_fraction=0.25), tmp_path)
    with pytest.raises(study.ConfigError, match="8 is more than the 7 training images of parts"):
        checked({**calibration_study(source, 8, test_fraction=0.25), "data": {"max_train_images": 7}}, tmp_path)


def test_a_tar_archive_is_not_counted_before_its_job(tmp_path):
    """Listing a .tar.gz means decompressing all of it, at every start: its size is checked when prepared."""
    image_folder(tmp_path / "parts", {"train/ok": 3})
    shutil.make_archive(str(tmp_path / "parts"), "gztar", tmp_path, "parts")
    checked(calibration_study(tmp_path / "parts.tar.gz", 500), tmp_path)
