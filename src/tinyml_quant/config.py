"""The study's configuration beyond its schema: names, cross-key checks, the grid and merged settings.

``rules/common.smk`` validates the config against ``config/schema.yaml``
(types and ranges), then calls ``check`` here, before any job: every name must
exist, every size must fit, user paths must exist. Errors name the config key
as the user wrote it. The functions need neither TensorFlow nor Snakemake, so
tests and tools call them directly.
"""

import copy
import difflib
from pathlib import Path

import yaml

from .architectures import ARCHITECTURES, check_knobs
from .backends import BACKENDS, INSTALL, backend_installed
from .devices import boards_from_config
from .fetch import BUILTIN_DATASETS, PUBLISHED_MODELS, dataset_mirror, is_url, model_mirror
from .npu import check_configuration
from .readers import DEFAULT_TEST_FRACTION, carved_test_size, image_counts
from .schemes import (
    CALIBRATED_SCHEMES,
    FULL_INTEGER,
    INT4_ALGORITHM_SCHEMES,
    LUT,
    QAT_SCHEMES,
    REFERENCE_SCHEME,
    SCHEMES,
    settings_scheme,
)

# The model files ``keras.models.load_model`` reads: Keras 3 files and Keras 2 (tf.keras) HDF5 files.
MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")


class ConfigError(ValueError):
    """A setting the workflow cannot run with; the message names the config key."""


# The study whose reports publish_reports copies into the tracked reports/ when no folder is named.
DEFAULT_STUDY = "default"
DEFAULT_PUBLISHED_REPORTS = "reports"


def published_folder(config):
    """Where publish_reports copies the study's reports: ``published_reports``, else reports/ for the default study.

    ``None`` for any other study that names no folder: its reports would
    overwrite the default study's tracked ones.
    """
    if config.get("published_reports"):
        return config["published_reports"]
    return DEFAULT_PUBLISHED_REPORTS if config["study"] == DEFAULT_STUDY else None


def refuse_publishing(config):
    """Raise ConfigError: this study names no folder for publish_reports (``published_folder`` gave None)."""
    raise ConfigError(
        f"published_reports: not set for study {config['study']!r}; only the {DEFAULT_STUDY!r} study publishes to "
        f"the tracked {DEFAULT_PUBLISHED_REPORTS}/ without it. Name this study's folder, e.g. "
        f"published_reports: {DEFAULT_PUBLISHED_REPORTS}/{config['study']}"
    )


def load_yaml(path):
    """A YAML config file's content; a syntax error names the file, line and column."""
    try:
        with open(path) as handle:
            return yaml.safe_load(handle) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(error, 'problem', None) or error})") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error})") from error
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error})") from error


def merged(base, overrides):
    """``overrides`` merged into a copy of ``base`` as Snakemake merges config files: dicts key by key."""
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _defined(schema, root):
    """The keys a schema fragment defines, following ``$ref`` into ``$defs`` (this schema's only kind of ref)."""
    keys = set(schema.get("properties", {}))
    reference = schema.get("$ref", "")
    if reference.startswith("#/$defs/"):
        keys |= _defined(root["$defs"][reference.removeprefix("#/$defs/")], root)
    return keys


def _where(error):
    return ".".join(str(part) for part in error.absolute_path)


def schema_problems(config, schema):
    """One short line per way ``config`` breaks ``schema``, naming the key; a misspelt key gets a "did you mean".

    Snakemake's own ``validate`` says the same after the whole schema and
    config (hundreds of lines); this runs first, so the user reads the key.
    """
    import jsonschema  # Snakemake's own dependency: the validator its ``validate`` uses

    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda error: list(map(str, error.absolute_path))):
        if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
            known = _defined(error.schema, schema)
            for key in sorted(set(error.instance) - known):
                where = ".".join(filter(None, [_where(error), str(key)]))
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known here: {sorted(known)}"
                problems.append(f"{where}: not a setting{hint}")
            if known:
                continue
        problems.append(f"{_where(error) or '(the config)'}: {error.message}")
    return problems


def check_schema(config, schema):
    """Raise ConfigError listing ``schema_problems``; the schema's own check (Snakemake's) follows it."""
    problems = schema_problems(config, schema)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def resolve(config, base_folder, workflow_folder, environ=None):
    """A copy of ``config`` with the mirror chosen and every user path made absolute from ``base_folder``.

    Relative paths in a config are read from the folder Snakemake was started
    in, whatever the study folder. The mirror is ``fetch.dataset_mirror``'s
    choice; ``workflow_folder`` holds the workflow's ``Snakefile``.
    """
    resolved = copy.deepcopy(config)
    base_folder = Path(base_folder)

    def absolute(path):
        return path if is_url(path) else str((base_folder / Path(path).expanduser()).resolve())

    mirror = dataset_mirror(config["data"]["mirror"], workflow_folder, environ)
    resolved["data"]["mirror"] = absolute(mirror) if mirror else ""
    models = model_mirror(config["data"]["model_mirror"], workflow_folder, environ)
    resolved["data"]["model_mirror"] = absolute(models) if models else ""
    for entry in resolved["image_folders"].values():
        entry["source"] = absolute(entry["source"])
    for entry in resolved["trained_models"].values():
        if "file" in entry:
            entry["file"] = absolute(entry["file"])
    return resolved


def check(config):
    """Raise ConfigError, naming the key, for what the schema cannot see; return ``config``."""
    problems = []
    _check_names(config, problems)
    _check_sources(config, problems)
    _check_training(config, problems)
    _check_calibration(config, problems)
    for name in config["models"]:
        if name in ARCHITECTURES:
            try:
                check_knobs(name, config["architectures"].get(name, {}))
            except ValueError as error:
                problems.append(f"architectures.{name}.depth: {error}")
    try:
        boards_from_config(config["boards"])
    except ValueError as error:
        problems.append(str(error))
    for position, board in enumerate(config["boards"]):
        if board.get("npu"):
            problems += check_configuration(board["npu"], f"boards[{position}] ({board['name']})")
    if not problems:  # the study's pairs are only known once its names are
        pairs = set(study_pairs(config))
        for dataset in config["datasets"]:
            if dataset in config["dataset_models"] and not any(pair[0] == dataset for pair in pairs):
                problems.append(
                    f"dataset_models.{dataset}: names none of models {config['models']} that can run on {dataset}"
                )
        for pair in config["diagnostics"]["always_recover"]:
            if tuple(pair.split("/")) not in pairs:
                problems.append(f"diagnostics.always_recover: {pair!r} is not a <dataset>/<model> pair of this study")
        # Any model the study could hold, so a config that narrows models keeps its preset's qat.models.
        known = sorted({*ARCHITECTURES, *config["trained_models"]})
        for model in config["qat"]["models"] or []:
            if model not in known:
                problems.append(f"qat.models: {model!r} is not a built-in or declared model ({known})")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def _check_names(config, problems):
    for scheme in config["schemes"]:
        if scheme not in SCHEMES:
            close = difflib.get_close_matches(scheme, SCHEMES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"schemes: {scheme!r} is not a scheme; {hint}known: {list(SCHEMES)}")
    if REFERENCE_SCHEME not in config["schemes"]:
        problems.append(f"schemes: must contain {REFERENCE_SCHEME!r}, which every other variant is compared with")
    if LUT in config["schemes"] and FULL_INTEGER not in config["schemes"]:
        problems.append(f"schemes: {LUT!r} bins the {FULL_INTEGER!r} variant's weights; list {FULL_INTEGER!r} too")
    for scheme, base in QAT_SCHEMES.items():
        if scheme in config["schemes"] and base not in config["schemes"]:
            problems.append(f"schemes: {scheme!r} is fine-tuned only where {base!r} loses accuracy; list {base!r} too")
    for key, own, builtin in (
        ("image_folders", config["image_folders"], BUILTIN_DATASETS),
        ("trained_models", config["trained_models"], ARCHITECTURES),
    ):
        for name in own:
            if name in builtin:
                problems.append(f"{key}.{name}: the name is a built-in one; choose another")
    for key, own, builtin in (
        ("datasets", config["image_folders"], BUILTIN_DATASETS),
        ("models", config["trained_models"], ARCHITECTURES),
    ):
        for name in config[key]:
            if name not in builtin and name not in own:
                problems.append(
                    f"{key}: {name!r} is neither built-in ({sorted(builtin)}) nor declared in "
                    f"{'image_folders' if key == 'datasets' else 'trained_models'} ({sorted(own)})"
                )
    # Any dataset or model the study could hold, as for qat.models: a config that narrows datasets or models
    # keeps its preset's dataset_models.
    datasets = sorted({*BUILTIN_DATASETS, *config["image_folders"]})
    models = sorted({*ARCHITECTURES, *config["trained_models"]})
    for dataset, listed in config["dataset_models"].items():
        if dataset not in datasets:
            problems.append(f"dataset_models.{dataset}: not a built-in or declared dataset ({datasets})")
        for model in listed:
            if model not in models:
                problems.append(f"dataset_models.{dataset}: {model!r} is not a built-in or declared model ({models})")
    for name, entry in config["trained_models"].items():
        # A published model comes with the default grid: a study without its dataset leaves it out. Your own
        # model is named for a dataset you meant to study.
        if name in config["models"] and entry["dataset"] not in config["datasets"] and "published" not in entry:
            problems.append(
                f"trained_models.{name}.dataset: {entry['dataset']!r} is not in datasets {config['datasets']}; "
                f"the model runs on that dataset only: list it in datasets or take {name!r} out of models"
            )
        if ("file" in entry) == ("published" in entry):
            problems.append(
                f"trained_models.{name}: give either file (your model) or published (one of {sorted(PUBLISHED_MODELS)})"
            )
        elif "published" in entry and entry["published"] not in PUBLISHED_MODELS:
            close = difflib.get_close_matches(entry["published"], PUBLISHED_MODELS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(
                f"trained_models.{name}.published: {entry['published']!r} is not a published model; {hint}"
                f"known: {sorted(PUBLISHED_MODELS)}"
            )
    _check_mlperf_reference(config, problems)


def _check_mlperf_reference(config, problems):
    """MLPerf Tiny's pretrained model, where named, must be a published model of trained_models on its dataset."""
    reference = config["mlperf_reference"]
    name = reference["pretrained_model"]
    if name is None:
        return
    entry = config["trained_models"].get(name, {})
    if "published" not in entry:
        published = sorted(model for model, each in config["trained_models"].items() if "published" in each)
        problems.append(
            f"mlperf_reference.pretrained_model: {name!r} is not a published model of trained_models ({published})"
        )
    elif entry["dataset"] != reference["dataset"]:
        problems.append(
            f"mlperf_reference.pretrained_model: {name!r} runs on {entry['dataset']!r} "
            f"(trained_models.{name}.dataset), not on the benchmark's dataset {reference['dataset']!r}"
        )


def _check_sources(config, problems):
    for name, entry in config["image_folders"].items():
        source = entry["source"]
        local = not is_url(source)
        is_folder = local and Path(source).is_dir()
        if local and not Path(source).exists():
            problems.append(f"image_folders.{name}.source: {source} does not exist")
        elif is_folder and "sha256" in entry:
            problems.append(f"image_folders.{name}.sha256: a checksum applies to an archive, {source} is a folder")
        elif not is_folder and not str(source).lower().endswith((".tar.gz", ".tgz", ".zip")):
            problems.append(f"image_folders.{name}.source: {source} is not a .tar.gz, .tgz or .zip archive or a folder")
    for name, entry in config["trained_models"].items():
        if "file" not in entry:
            continue  # a published model: fetched, and its checksums verified, by its own job
        path = Path(entry["file"])
        if not path.exists():
            problems.append(f"trained_models.{name}.file: {path} does not exist")
        elif not (path.suffix in MODEL_FILE_SUFFIXES or (path / "saved_model.pb").is_file()):
            problems.append(
                f"trained_models.{name}.file: {path} is neither a .keras or Keras 2 .h5 file nor a SavedModel folder"
            )


def _check_training(config, problems):
    training = config["training"]
    for key, backend in _setting_values(training, "backend"):
        if backend in BACKENDS and not backend_installed(backend):
            problems.append(
                f"{key}: {backend} is not installed in this environment; install it with: {INSTALL[backend]}"
            )
    known_datasets = set(BUILTIN_DATASETS) | set(config["image_folders"])
    known_models = set(ARCHITECTURES)
    for model in training.get("per_model", {}):
        if model not in known_models:
            problems.append(f"training.per_model.{model}: not a built-in model; known: {sorted(known_models)}")
    for dataset, settings in training.get("per_dataset", {}).items():
        if dataset not in known_datasets:
            problems.append(f"training.per_dataset.{dataset}: not a dataset; known: {sorted(known_datasets)}")
        for model in settings.get("per_model", {}):
            if model not in known_models:
                problems.append(
                    f"training.per_dataset.{dataset}.per_model.{model}: not a built-in model; "
                    f"known: {sorted(known_models)}"
                )


def _setting_values(training, name):
    """``(key path, value)`` of the training setting ``name`` wherever the recipe sets it, overrides included."""
    found = [(f"training.{name}", training[name])] if name in training else []
    for model, settings in training.get("per_model", {}).items():
        if name in settings:
            found.append((f"training.per_model.{model}.{name}", settings[name]))
    for dataset, settings in training.get("per_dataset", {}).items():
        if name in settings:
            found.append((f"training.per_dataset.{dataset}.{name}", settings[name]))
        for model, inner in settings.get("per_model", {}).items():
            if name in inner:
                found.append((f"training.per_dataset.{dataset}.per_model.{model}.{name}", inner[name]))
    return found


def built_in_train_images(config):
    """The training images of each built-in dataset of the study, as the workflow will prepare them."""
    limit = config["data"]["max_train_images"]
    return {
        dataset: min(BUILTIN_DATASETS[dataset].train_images, limit or BUILTIN_DATASETS[dataset].train_images)
        for dataset in config["datasets"]
        if dataset in BUILTIN_DATASETS
    }


def train_images(config):
    """The training images of each dataset of the study whose count is known before any job.

    Built-in datasets, and image folders that are a local folder or ``.zip``
    (counted from their member names, as the workflow will prepare them: the
    test split carved out when there is no ``test/``, ``data.max_train_images``
    applied). A ``.tar.gz`` or a URL is counted only when it is prepared.
    """
    counts = built_in_train_images(config)
    limit = config["data"]["max_train_images"]
    for dataset, entry in config["image_folders"].items():
        if dataset not in config["datasets"] or is_url(entry["source"]):
            continue
        split = image_counts(entry["source"])
        if not split or not split["train"]:
            continue  # not countable here, or empty: the reader names the problem when it prepares it
        count = split["train"]
        if not split["test"]:
            count -= carved_test_size(count, entry.get("test_fraction", DEFAULT_TEST_FRACTION))
        counts[dataset] = min(count, limit or count)
    return counts


def _check_calibration(config, problems):
    """Calibration sizes within the training split of every dataset whose size is known (``train_images``)."""
    sweep = config["conversion"]["calibration_sweep"]
    own = config["conversion"][FULL_INTEGER]["calibration_images"]
    if own in sweep:
        problems.append(
            f"conversion.calibration_sweep: {own} is int8's own calibration size (conversion.int8), already in "
            "the sweep's table"
        )
    if sweep and FULL_INTEGER not in config["schemes"]:
        problems.append("conversion.calibration_sweep: the sweep makes int8 variants; list 'int8' in schemes, or []")
    counts = train_images(config)
    if not counts:
        return
    dataset, fewest = min(counts.items(), key=lambda item: item[1])
    # int4's algorithm twins are calibrated with int4's settings: one key, named once.
    calibrated = dict.fromkeys(settings_scheme(scheme) for scheme in CALIBRATED_SCHEMES if scheme in config["schemes"])
    sizes = [
        (f"conversion.{scheme}.calibration_images", config["conversion"][scheme]["calibration_images"])
        for scheme in calibrated
    ]
    sizes += [("conversion.calibration_sweep", size) for size in config["conversion"]["calibration_sweep"]]
    for key, size in sizes:
        if size > fewest:
            problems.append(f"{key}: {size} is more than the {fewest} training images of {dataset}; lower it")


def conversion_settings(config, scheme):
    """What ``scheme`` is made with: ``conversion.<scheme>``, or for int4's algorithm twins int4's with their own
    ``weight_algorithm``; ``{}`` for a scheme without settings."""
    settings = copy.deepcopy(config["conversion"].get(settings_scheme(scheme), {}))
    if scheme in INT4_ALGORITHM_SCHEMES:
        settings["weight_algorithm"] = INT4_ALGORITHM_SCHEMES[scheme]
    return settings


def study_pairs(config):
    """Every ``(dataset, model)`` of the study: each built-in model on each dataset (those ``dataset_models`` lists
    where it names the dataset), each trained model on its own (none where the study lacks it)."""
    pairs = []
    for dataset in config["datasets"]:
        listed = config["dataset_models"].get(dataset)
        for model in config["models"]:
            trained = config["trained_models"].get(model)
            # check() has refused names that are neither built-in nor trained models.
            if (trained is None or trained["dataset"] == dataset) and (listed is None or model in listed):
                pairs.append((dataset, model))
    return pairs


def study_instances(config):
    """Every ``(dataset, model, seed)``: each built-in model once per seed, each trained model once.

    A trained model is imported, not trained, so it has no seed of its own; it
    appears under the first seed.
    """
    seeds = [str(seed) for seed in config["seeds"]]
    return [
        (dataset, model, seed)
        for dataset, model in study_pairs(config)
        for seed in (seeds[:1] if model in config["trained_models"] else seeds)
    ]


def published_model(config, model):
    """The published model (a name of ``fetch.PUBLISHED_MODELS``) ``model`` is imported from; None for any other."""
    return config["trained_models"].get(model, {}).get("published")


def published_int8_instances(config):
    """Every ``(dataset, model, seed)`` of the study imported from a published model that has its own int8 file."""
    return [
        instance
        for instance in study_instances(config)
        if published_model(config, instance[1]) and PUBLISHED_MODELS[published_model(config, instance[1])].int8_file
    ]


def is_trained_model(config, model):
    """Whether ``model`` is a user's trained model (imported) rather than a built-in one (trained here)."""
    return model in config["trained_models"]


TRAINING_OVERRIDES = ("per_model", "per_dataset")


def training_settings(training, dataset, model):
    """The training recipe of ``model`` on ``dataset``: the shared settings, then the overrides.

    Precedence, later wins: ``training``, ``training.per_dataset.<dataset>``,
    ``training.per_model.<model>``, ``training.per_dataset.<dataset>.per_model.<model>``:
    a model's own setting wins over its dataset's, the pair's over both.
    """
    per_dataset = training.get("per_dataset", {}).get(dataset, {})
    layers = [
        training,
        per_dataset,
        training.get("per_model", {}).get(model, {}),
        per_dataset.get("per_model", {}).get(model, {}),
    ]
    settings = {}
    for layer in layers:
        settings.update({key: value for key, value in layer.items() if key not in TRAINING_OVERRIDES})
    return copy.deepcopy(settings)


def dataset_source(config, dataset):
    """What fetching ``dataset`` needs: a built-in dataset's mirror, or an image folder's source and checksum."""
    folder = config["image_folders"].get(dataset)
    if folder is None:
        return {"mirror": config["data"]["mirror"]}
    return {"source": folder["source"], "sha256": folder.get("sha256")}


def local_source_files(config, dataset):
    """The local files of an image-folder dataset (one archive, or every file of a folder); [] otherwise."""
    folder = config["image_folders"].get(dataset)
    if folder is None or is_url(folder["source"]):
        return []
    source = Path(folder["source"])
    if source.is_dir():
        return sorted(str(path) for path in source.rglob("*") if path.is_file())
    return [str(source)]
