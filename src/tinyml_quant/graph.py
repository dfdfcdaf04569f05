"""What a TFLite flatbuffer holds: its operators, parameters and multiply-accumulates.

The graph is read with the flatbuffer schema that ``ai-edge-litert`` ships
(``ai_edge_litert.schema_py_generated``), so no TensorFlow import is needed and
the reader matches the runtime that evaluates the variants.

Cost is counted from the TFLite graph, not from Keras, so every variant of a
model is counted the same way (batch norm and ReLU are already folded into the
convolutions there):

* **MACs** (multiply-accumulates per inference, batch 1) of the three
  operators that dominate a CNN's arithmetic:

  - ``CONV_2D``: output elements x kernel height x kernel width x input
    channels per group (the filter is ``[out, kh, kw, in]``);
  - ``DEPTHWISE_CONV_2D``: output elements x kernel height x kernel width
    (the output channels already include the depth multiplier);
  - ``FULLY_CONNECTED``: output elements x input features (weights are
    ``[units, in]``).

  Additions, pooling, means and activations are not counted: they cost far
  less than one MAC per weight and counting them would mix units.
* **parameters**: elements of the constant weight and bias tensors of those
  same operators. In the float16 variant the weights reach the operator
  through a ``DEQUANTIZE`` of a float16 constant; that constant is counted,
  so every variant of a model has the same count. Other constants (reshape
  shapes, padding sizes, quantization multipliers) are not parameters, and
  neither is a bias of zeros that the converter dropped (an untrained Dense).
"""

import collections
import logging
from pathlib import Path

from .files import write_json
from .variants import NotConverted, not_converted_fields, read_variant

logger = logging.getLogger(__name__)

# The operators whose MACs and parameters are counted, and the rank of their weights tensor.
WEIGHTS_RANK = {"CONV_2D": 4, "DEPTHWISE_CONV_2D": 4, "FULLY_CONNECTED": 2}
TFLITE_FILE_IDENTIFIER = b"TFL3"
# TensorFlow Lite Micro's decoder of LUT-compressed tensors, as operator_name names it.
DECODE = "CUSTOM:TFLM_DECODE"


def read_flatbuffer(model):
    """``(bytes, where)`` for a ``.tflite`` path or flatbuffer bytes; ``where`` names it in errors."""
    if isinstance(model, (bytes, bytearray)):
        return bytes(model), "model bytes"
    path = Path(model)
    try:
        return path.read_bytes(), str(path)
    except OSError as error:
        raise ValueError(f"{path}: cannot read the TFLite file ({error})") from error


def parse_model(model):
    """The flatbuffer as the schema's object tree (``ModelT``); a damaged file raises ValueError naming it."""
    return _parse(*read_flatbuffer(model))


def _parse(content, where):
    from ai_edge_litert import schema_py_generated as schema

    if len(content) < 8 or not schema.Model.ModelBufferHasIdentifier(content, 0):
        raise ValueError(f"{where}: not a TFLite flatbuffer (no {TFLITE_FILE_IDENTIFIER.decode()} identifier)")
    try:
        parsed = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    except Exception as error:  # the generated reader raises struct.error, IndexError, ... on damage
        raise ValueError(f"{where}: damaged TFLite flatbuffer ({type(error).__name__}: {error})") from error
    if not parsed.subgraphs:
        raise ValueError(f"{where}: the TFLite flatbuffer has no subgraph")
    problem = _broken_reference(parsed)
    if problem:
        raise ValueError(f"{where}: damaged TFLite flatbuffer ({problem})")
    return parsed


def _broken_reference(parsed):
    """The first index in the tree that points outside its table, or None.

    The generated reader checks nothing: a damaged file can parse into
    operators that name missing tensors or operator codes, and tensors that
    name missing buffers (found by fuzzing, tests/test_fuzz.py).
    """
    codes, buffers = len(parsed.operatorCodes or []), len(parsed.buffers or [])
    for graph_index, subgraph in enumerate(parsed.subgraphs):
        tensors = subgraph.tensors or []
        for tensor_index, tensor in enumerate(tensors):
            if not 0 <= tensor.buffer < max(buffers, 1):
                return f"subgraph {graph_index} tensor {tensor_index} names buffer {tensor.buffer} of {buffers}"
        ends = [("input", index) for index in _listed(subgraph.inputs)]
        ends += [("output", index) for index in _listed(subgraph.outputs)]
        for kind, index in ends:
            if not 0 <= int(index) < len(tensors):
                return f"subgraph {graph_index} {kind} names tensor {index} of {len(tensors)}"
        for operator_index, operator in enumerate(subgraph.operators or []):
            if not 0 <= operator.opcodeIndex < codes:
                code = operator.opcodeIndex
                return f"subgraph {graph_index} operator {operator_index} names operator code {code} of {codes}"
            inputs, outputs = _listed(operator.inputs), _listed(operator.outputs)
            # -1: an optional input left out (a convolution without bias).
            if any(not -1 <= int(index) < len(tensors) for index in inputs) or any(
                not 0 <= int(index) < len(tensors) for index in outputs
            ):
                return f"subgraph {graph_index} operator {operator_index} names a tensor outside its {len(tensors)}"
    return None


def _as_parsed(model):
    """Accept a path, bytes or an already parsed ``ModelT``, so callers parse a file once."""
    return model if hasattr(model, "subgraphs") else parse_model(model)


def _builtin_names():
    from ai_edge_litert import schema_py_generated as schema

    return {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


def operator_name(parsed, operator, builtin_names=None):
    """``CONV_2D``-style name of an operator; custom operators read ``CUSTOM:<name>``."""
    from ai_edge_litert import schema_py_generated as schema

    builtin_names = builtin_names or _builtin_names()
    code = parsed.operatorCodes[operator.opcodeIndex]
    # Codes above 127 live in builtinCode; older files keep small codes in the deprecated field only.
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM and code.customCode:
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        return f"CUSTOM:{custom}"
    return builtin_names.get(builtin, f"BUILTIN_{builtin}")


def operator_counts(model):
    """``{operator name: count}`` over every subgraph, sorted by name."""
    parsed = _as_parsed(model)
    names = _builtin_names()
    counts = collections.Counter(
        operator_name(parsed, operator, names)
        for subgraph in parsed.subgraphs
        for operator in (subgraph.operators or [])
    )
    return dict(sorted(counts.items()))


def external_buffers(model):
    """``{buffer index: bytes}`` of the buffers whose data lies outside the flatbuffer, at ``Buffer.offset``.

    The schema's layout for files over 2 GB: ``Buffer.data`` empty,
    ``Buffer.offset`` and ``Buffer.size`` naming bytes after the flatbuffer
    (an offset of 0 or 1 is no data). LiteRT follows the offsets; TensorFlow
    Lite Micro reads only ``Buffer.data`` and computes with whatever its
    arena holds (tflite-micro issue #3196). Custom options stored the same
    way (``largeCustomOptionsOffset``) count under their operator as
    ``"subgraph G operator O"``.
    """
    parsed = _as_parsed(model)
    found = {index: int(buffer.size or 0) for index, buffer in enumerate(parsed.buffers or []) if _at_offset(buffer)}
    for graph_index, subgraph in enumerate(parsed.subgraphs):
        for operator_index, operator in enumerate(subgraph.operators or []):
            if (operator.largeCustomOptionsOffset or 0) > 1:
                found[f"subgraph {graph_index} operator {operator_index}"] = int(operator.largeCustomOptionsSize or 0)
    return found


def _at_offset(buffer):
    return (buffer.offset or 0) > 1


def inline_buffers(model):
    """The flatbuffer's bytes with every buffer (and custom options) held inline, as TensorFlow Lite Micro reads them.

    A file without external data comes back unchanged, byte for byte; one
    with it is written again from its parsed tree, each external block moved
    into ``Buffer.data`` (or ``customOptions``), the way the AI Edge
    Quantizer writes the files it keeps inline. Nothing else changes, so
    LiteRT computes the same outputs. Data an offset points past the end of
    the file is a ValueError naming it.
    """
    import flatbuffers
    import numpy as np

    content, where = read_flatbuffer(model)
    parsed = _parse(content, where)
    if not external_buffers(parsed):
        return content

    def block(offset, size, what):
        if offset + size > len(content):
            raise ValueError(f"{where}: {what} lies at bytes {offset}-{offset + size}, past the file's {len(content)}")
        return np.frombuffer(content, np.uint8, count=size, offset=offset).copy()

    for index, buffer in enumerate(parsed.buffers):
        if _at_offset(buffer):
            buffer.data = block(int(buffer.offset), int(buffer.size or 0), f"buffer {index}")
            buffer.offset, buffer.size = 0, 0
    for subgraph in parsed.subgraphs:
        for operator in subgraph.operators or []:
            if (operator.largeCustomOptionsOffset or 0) > 1:
                offset, size = int(operator.largeCustomOptionsOffset), int(operator.largeCustomOptionsSize or 0)
                operator.customOptions = block(offset, size, "custom options")
                operator.largeCustomOptionsOffset, operator.largeCustomOptionsSize = 0, 0
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(parsed.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def _listed(values):
    """A vector field of the parsed tree as a list: the reader gives None for an absent one."""
    return [] if values is None else list(values)


def _shape(tensor):
    return _listed(tensor.shape)


def _elements(shape):
    count = 1
    for size in _listed(shape):
        count *= int(size)
    return count


def _is_constant(parsed, tensor):
    """A tensor is constant when its buffer holds data (inline, or at an offset in large files)."""
    if tensor.buffer <= 0 or tensor.buffer >= len(parsed.buffers):
        return False
    buffer = parsed.buffers[tensor.buffer]
    return (buffer.data is not None and len(buffer.data) > 0) or (buffer.offset or 0) > 1


def _constant_source(parsed, subgraph, producers, tensor_index):
    """The constant tensor behind an operator input, looking through a DEQUANTIZE (float16 weights).

    Behind TFLite Micro's DECODE (LUT-compressed weights) the decoded tensor
    itself counts: its shape is the weights', its encoded input holds packed indices.
    """
    if tensor_index < 0:
        return None  # optional input left out, e.g. a convolution without bias
    tensor = subgraph.tensors[tensor_index]
    if _is_constant(parsed, tensor):
        return tensor
    producer = producers.get(tensor_index)
    if producer is not None and producer[0] == DECODE:
        return tensor
    if producer is not None and producer[0] == "DEQUANTIZE" and _listed(producer[1].inputs):
        source = subgraph.tensors[producer[1].inputs[0]]
        if _is_constant(parsed, source):
            return source
    return None


def layer_costs(model):
    """One record per counted operator: name, output shape, MACs and parameters (see the module docstring)."""
    parsed = _as_parsed(model)
    names = _builtin_names()
    layers = []
    for subgraph in parsed.subgraphs:
        operators = [(operator_name(parsed, operator, names), operator) for operator in (subgraph.operators or [])]
        producers = {int(output): pair for pair in operators for output in _listed(pair[1].outputs)}
        for name, operator in operators:
            if name not in WEIGHTS_RANK:
                continue
            outputs, inputs = _listed(operator.outputs), _listed(operator.inputs)
            if len(outputs) < 1 or len(inputs) < 2 or inputs[1] < 0:
                raise ValueError(f"{name} without its output or weights")
            output_shape = [int(size) for size in _shape(subgraph.tensors[outputs[0]])]
            weights_shape = [int(size) for size in _shape(subgraph.tensors[inputs[1]])]
            if len(weights_shape) != WEIGHTS_RANK[name]:
                raise ValueError(f"{name} with weights of shape {weights_shape}")
            output_elements = _elements(output_shape)
            if name == "CONV_2D":
                macs = output_elements * weights_shape[1] * weights_shape[2] * weights_shape[3]
            elif name == "DEPTHWISE_CONV_2D":
                macs = output_elements * weights_shape[1] * weights_shape[2]
            else:
                macs = output_elements * weights_shape[-1]
            parameters = 0
            for index in [int(position) for position in inputs[1:3]]:
                constant = _constant_source(parsed, subgraph, producers, index)
                if constant is not None:
                    parameters += _elements(constant.shape)
            layers.append(
                {
                    "operator": name,
                    "output_shape": output_shape,
                    "weights_shape": weights_shape,
                    "macs": macs,
                    "parameters": parameters,
                }
            )
    return layers


def analyze_graph(model):
    """Operators with counts, parameters and MACs of a ``.tflite`` path or flatbuffer bytes."""
    content, where = read_flatbuffer(model)
    parsed = _parse(content, where)
    try:
        layers = layer_costs(parsed)
    except ValueError as error:
        raise ValueError(f"{where}: damaged TFLite flatbuffer ({error})") from error
    operators = operator_counts(parsed)
    macs_by_operator = collections.Counter()
    for layer in layers:
        macs_by_operator[layer["operator"]] += layer["macs"]
    return {
        "operators": operators,
        "operator_total": sum(operators.values()),
        "parameters": sum(layer["parameters"] for layer in layers),
        "macs": sum(layer["macs"] for layer in layers),
        "macs_by_operator": dict(sorted(macs_by_operator.items())),
        "counted_layers": len(layers),
        "file_bytes": len(content),
        "cost_note": (
            "MACs per inference (batch 1) of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED; "
            "parameters are the elements of their constant weight and bias tensors"
        ),
    }


def run_graph_analysis(tflite_path, variant, output_path):
    """Snakemake entry point: analyze one ``.tflite`` file and write the JSON record (``variant`` names it)."""
    try:
        read_variant(tflite_path)
    except NotConverted as error:
        empty = {"operators": {}, "operator_total": 0, "parameters": None, "macs": None, "file_bytes": None}
        write_json(output_path, {**variant, **not_converted_fields(error), **empty})
        return
    analysis = {**variant, **analyze_graph(tflite_path)}
    write_json(output_path, analysis)
    logger.info(
        "%s: %d operators, %d parameters, %d MACs",
        tflite_path,
        analysis["operator_total"],
        analysis["parameters"],
        analysis["macs"],
    )
    return analysis
