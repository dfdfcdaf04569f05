"""The TFLite converter's child process: one conversion per request (``conversion.convert_in_child``).

Run as ``python -m tinyml_quant.conversion_worker <request.json>``. The
converter can end its process with a segmentation fault instead of raising
(an LSTM with a fixed batch size, calibrated for int8, does), so a model from
outside the workflow is converted here: the parent reads the log, and a child
that died is the variant's verdict, not the job's end.
"""

import json
import resource
import sys
from pathlib import Path

import numpy as np

from .children import event_log
from .conversion import convert, converter_reason
from .runtime import configure_tensorflow, load_keras_model


def main(request_path):
    # A crash is a result here, and a core file of TensorFlow is gigabytes: leave none behind.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    request = json.loads(Path(request_path).read_text())
    log = event_log(request["progress_path"])
    configure_tensorflow(request["threads"])
    model = load_keras_model(request["model_path"])
    images = np.load(request["images_path"]) if request["images_path"] else None
    log(event="converting")
    try:
        flatbuffer = convert(model, request["scheme"], images)
    except Exception as error:  # the converter raises ConverterError, ValueError, ... for what it cannot lower
        log(event="refused", reason=converter_reason(error))
        return
    Path(request["output_path"]).write_bytes(flatbuffer)
    log(event="done")


if __name__ == "__main__":
    main(sys.argv[1])
