"""Snakemake entry point of rule prepare_dataset."""

from tinyml_quant.datasets import prepare
from tinyml_quant.files import output_to_log

with output_to_log(snakemake.log[0]):
    prepare(
        snakemake.input.manifest,
        snakemake.output.prepared,
        max_train_images=snakemake.params.max_train_images,
        max_test_images=snakemake.params.max_test_images,
        subset_seed=snakemake.params.subset_seed,
        image_folder=dict(snakemake.params.image_folder),
    )
