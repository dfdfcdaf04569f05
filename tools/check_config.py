"""Check config files as the workflow would, before starting it: YAML syntax, the schema, the study's checks.

    python -m tools.check_config my_study.yaml [more.yaml ...]

Snakemake reads ``--configfile`` files itself, before any of the workflow's
code runs, and reports a broken one only as "Config file is not valid JSON or
YAML", naming neither the file nor the line. This names both, then runs the
same schema validation and checks as ``rules/common.smk``, on
``config/config.yaml`` with the given files merged over it in order.
"""

import argparse
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from tinyml_quant import config as study

REPOSITORY = Path(__file__).resolve().parents[1]


def checked_config(paths, defaults=REPOSITORY / "config" / "config.yaml", base_folder=None):
    """The config the workflow would run with; ConfigError or WorkflowError naming what is wrong."""
    config = study.load_yaml(defaults)
    for path in paths:
        loaded = study.load_yaml(path)
        if not isinstance(loaded, dict):
            raise study.ConfigError(f"{path}: a config file holds a mapping of keys, not {type(loaded).__name__}")
        config = study.merged(config, loaded)
    schema = REPOSITORY / "config" / "schema.yaml"
    study.check_schema(config, study.load_yaml(schema))
    validate(config, str(schema))
    return study.check(study.resolve(config, base_folder or Path.cwd(), REPOSITORY))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.check_config", description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", type=Path, help="config files, merged over config/config.yaml in order")
    args = parser.parse_args(argv)
    try:
        config = checked_config(args.configs)
    except (study.ConfigError, WorkflowError) as error:
        print(error, file=sys.stderr)
        return 1
    pairs = study.study_pairs(config)
    print(f"valid: study {config['study']!r}, {len(pairs)} dataset/model pairs x {len(config['schemes'])} schemes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
