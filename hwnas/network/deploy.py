"""The device side: the model a device runs, its TFLite conversion (int8 or float32), the C header
a firmware includes, and what TensorFlow Lite Micro measures for a model (its arena, its outputs).

Flash on a microcontroller is the flatbuffer's size; RAM is the tensor arena that
TensorFlow Lite Micro (TFLM) plans for it. TFLM's Python interpreter (PyPI package
tflite-micro) runs the same C++ allocator and reference kernels as a device.
"""
import os
import re
import warnings

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from hwnas.common.files import write_atomically
from hwnas.common.quiet import quiet_native_output
from hwnas.data.metrics import compute_descriptors
from hwnas.network.encodings import ENCODINGS
from hwnas.network.encodings.base import device_samples, takes_byte_values
from hwnas.network.input_stage import INPUT_STAGE_LAYERS

PRECISIONS = ("int8", "float32")


def device_model(model):
    """The model the device runs, from a network's Keras model (Net.ins_keras_model, or a saved
    best_model.keras): the input stage's layers (INPUT_STAGE_LAYERS) give way to what its
    encoding's device model starts with (hwnas.network.encodings: an input of what the device
    feeds, then its device layers with the trained weights); the blocks' and head's layers are
    the model's own (their weights shared). A model without an input stage is returned as it is."""
    stage_layers = [layer for layer in model.layers if layer.name in INPUT_STAGE_LAYERS]
    if not stage_layers:
        return model
    rest = model.layers[len(stage_layers):]
    length = stage_layers[-1].output.shape[1]
    names = {layer.name for layer in stage_layers}
    # the encoding whose layers these are (the one without layers of its own: a crop alone)
    encoding = next(kind for kind in sorted(ENCODINGS.values(), key=lambda kind: -len(kind.layer_names))
                    if kind.recognises(names))
    shape, dtype, front, weights = encoding.device_front(model, length)
    # The model's own name: the converter names each tensor after it, and those names are flash bytes.
    device = keras.Sequential([keras.Input(shape=shape, dtype=dtype), *front, *rest], name=model.name)
    for layer, layer_weights in weights:
        layer.set_weights(layer_weights)
    return device


def convert_to_tflite(model, representative_X, precision="int8"):
    """Converts a Keras model to a TFLite flatbuffer for one-sample (batch 1) inference.

    representative_X: samples from the training split as the model takes them
        (float32 (N, length, channels), or int32 byte values (N, length) for a
        byte-table input); int8 calibration reads them to choose each tensor's scale.
    precision: 'int8' (weights, activations, input and output all int8, as
        TFLM runs on integer-only cores) or 'float32'.
    Returns the flatbuffer as bytes.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    # A fixed batch of 1 is what a device runs; it also lets the converter drop the
    # dynamic-shape ops that Flatten and Conv1D's reshapes otherwise leave in the graph.
    input_dtype = np.dtype(model.inputs[0].dtype)
    input_spec = tf.TensorSpec((1,) + tuple(model.inputs[0].shape[1:]), input_dtype, name="input")
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(input_spec)
    # The graph is frozen first, so the converter needs no trackable object; it still
    # logs a deprecation note about that argument, which says nothing about this model.
    with quiet_native_output():
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [convert_variables_to_constants_v2(concrete)])
    if precision == "int8":
        calibration_X = np.asarray(representative_X, dtype=input_dtype)

        def representative_dataset():
            for sample in calibration_X:
                yield [sample[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if input_dtype.kind == "f":  # byte values (a byte table's input) stay int32
            converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with quiet_native_output(), warnings.catch_warnings():
        # A byte table's input is int32 byte values, never quantized: the converter's note that
        # it found no input statistics says nothing about the model.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return converter.convert()


def _tflm_interpreter(model_bytes):
    from tflite_micro.python.tflite_micro import runtime
    # The arena given here is an upper bound for planning; what the model uses is measured.
    return runtime.Interpreter.from_bytes(model_bytes, arena_size=max(len(model_bytes) * 10, 1 << 20))


_ARENA_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def tflm_arena(model_bytes):
    """The tensor arena TFLM allocates for the model, in bytes.

    Returns {'total', 'activations', 'persistent'}: activations is the arena's
    head (tensors planned by TFLM's memory planner), persistent its tail
    (interpreter structures and per-op data). Raises RuntimeError when TFLM
    reports no figure.
    """
    interpreter = _tflm_interpreter(model_bytes)
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
    interpreter.invoke()
    with quiet_native_output() as output:
        interpreter.print_allocations()
    figures = {name: int(value) for name, value in _ARENA_LINE.findall(output.text)}
    if set(figures) != {"total", "head", "tail"}:
        raise RuntimeError(f"TFLM printed no arena figures; it printed: {output.text[:500]!r}")
    return {"total": figures["total"], "activations": figures["head"], "persistent": figures["tail"]}


def tflm_predict(model_bytes, X):
    """Runs the TFLite model in TFLM on samples X, as firmware does.

    X: the data's samples (float32 (N, length, 1), bytes / 255, as the toolkit loads
    them), which are cut to the model's input length and, for a byte table's int32
    input, turned into byte values (hwnas.network.input_stage.device_samples); or byte values
    (integers) for such a model. A float input is quantized with the model's input
    scale and zero point, and the outputs dequantized. Returns float32 outputs (N, classes).
    """
    interpreter = _tflm_interpreter(model_bytes)
    input_details = interpreter.get_input_details(0)
    output_details = interpreter.get_output_details(0)
    input_dtype, output_dtype = input_details["dtype"], output_details["dtype"]
    input_scale, input_zero = _quantization(input_details)
    output_scale, output_zero = _quantization(output_details)
    input_shape = tuple(input_details["shape"])  # (1, length) or (1, length, 1)
    samples = device_samples(X, input_shape[1], takes_byte_values(input_dtype))
    outputs = []
    for sample in samples:
        if input_dtype == np.int8:
            sample = np.clip(np.round(sample / input_scale + input_zero), -128, 127)
        interpreter.set_input(sample.reshape(input_shape).astype(input_dtype), 0)
        interpreter.invoke()
        output = interpreter.get_output(0).astype(np.float32)
        if output_dtype == np.int8:
            output = (output - output_zero) * output_scale
        outputs.append(output[0])
    return np.stack(outputs)


def _quantization(details):
    parameters = details.get("quantization_parameters", {})
    scales, zeros = parameters.get("scales", []), parameters.get("zero_points", [])
    return (float(scales[0]), int(zeros[0])) if len(scales) else (1.0, 0)


def io_quantization(model_bytes):
    """Scale and zero point of the model's input and output: {'input': (scale, zero), 'output': ...}.

    Float models give (1.0, 0). A firmware quantizes its input with these.
    """
    interpreter = _tflm_interpreter(model_bytes)
    return {"input": _quantization(interpreter.get_input_details(0)),
            "output": _quantization(interpreter.get_output_details(0))}


def input_feed(model_bytes):
    """What a firmware writes into the model's input, in words: {'type', 'length', 'text'}.

    A byte-table network (int32 input) takes the session's bytes as they are; a scaled
    one takes each byte b as b / 255, quantized with the input's scale and zero point
    when the model is int8 (for the scale 1/255 and zero point -128 the converter
    chooses on byte data, that is b - 128), as a float when it is float32.
    """
    interpreter = _tflm_interpreter(model_bytes)
    details = interpreter.get_input_details(0)
    length, dtype = int(np.prod(details["shape"])), np.dtype(details["dtype"])
    if takes_byte_values(dtype):
        text = (f"the session's first {length} bytes as they are, each an {dtype.name} from 0 to 255 "
                f"(no scaling: the model looks each byte up in its table)")
    elif dtype == np.int8:
        scale, zero_point = _quantization(details)
        text = (f"the session's first {length} bytes, byte b as int8 round(b / 255 / input_scale) + "
                f"input_zero_point (here scale {scale:.6g}, zero point {zero_point})")
    else:
        text = f"the session's first {length} bytes, byte b as the float b / 255.0"
    return {"type": dtype.name, "length": length, "text": text}


def write_c_header(model_bytes, path, array_name="g_model", arena_bytes=None):
    """Writes the model as a C++ header, the way TFLM projects include a model.

    Holds the flatbuffer as a 16-byte aligned const unsigned char array (TFLM
    reads it in place), its length, what to feed its input (input_feed), the input's
    and output's quantization, and the measured arena size when given.
    """
    guard = re.sub(r"\W", "_", os.path.basename(path)).upper()
    quantization = io_quantization(model_bytes)
    feed = input_feed(model_bytes)
    lines = [f"// TFLite model, {len(model_bytes)} bytes. Generated by the HW-NAS toolkit.",
             f"// Input: {feed['length']} values of type {feed['type']}: {feed['text']}.",
             f"#ifndef {guard}", f"#define {guard}", "",
             f"alignas(16) const unsigned char {array_name}[] = {{"]
    for start in range(0, len(model_bytes), 12):
        chunk = model_bytes[start:start + 12]
        lines.append("  " + ", ".join(f"0x{byte:02x}" for byte in chunk) + ",")
    lines += ["};", f"const unsigned int {array_name}_len = {len(model_bytes)};",
              f"const unsigned int {array_name}_input_length = {feed['length']};"]
    for tensor, (scale, zero_point) in quantization.items():
        lines += [f"// {tensor}: real_value = scale * (quantized_value - zero_point)",
                  f"const float {array_name}_{tensor}_scale = {scale!r}f;",
                  f"const int {array_name}_{tensor}_zero_point = {zero_point};"]
    if arena_bytes is not None:
        lines += ["// Tensor arena TFLM (reference kernels) allocated for this model, in bytes.",
                  f"const unsigned int {array_name}_arena_bytes = {arena_bytes};"]
    lines += ["", f"#endif  // {guard}", ""]
    write_atomically(path, "\n".join(lines))



def export_network(net, precision, n_representative=200):
    """net (hwnas.network.net.Net) as a TFLite flatbuffer at precision: its device model, with the
    trained weights when it has some. int8 calibration draws n_representative samples of the
    training split (seeded by the network's seed), never the test split."""
    model = net.device_model(load_weigths=net.trained)
    sample_rng = np.random.default_rng(net.train_settings["seed"])
    n_samples = min(n_representative, len(net.data.X_train))
    representative = net.device_input(
        net.data.X_train[sample_rng.choice(len(net.data.X_train), n_samples, replace=False)])
    try:
        return convert_to_tflite(model, representative, precision)
    finally:
        del model


def measure_network(net, model_bytes):
    """What the device shows of net's deployed model: flash (flatbuffer bytes), TFLM's arena and
    the test metrics of the model run by TFLM's interpreter on the test split, as a device runs it."""
    arena = tflm_arena(model_bytes)
    metrics = compute_descriptors(net.data.Y_test, tflm_predict(model_bytes, net.data.X_test))
    return {"precision": net.deploy_precision, "flash_bytes": len(model_bytes), "arena_bytes": arena["total"],
            "arena_activations": arena["activations"], "arena_persistent": arena["persistent"],
            "test_accuracy": metrics["accuracy"], "test_f1": metrics["f1"]}


def save_deployed(model_bytes, path_without_extension, arena_bytes=None):
    """Writes a flatbuffer (<path>.tflite) and its C header (<path>.h), atomically. Returns the paths."""
    tflite_path, header_path = path_without_extension + ".tflite", path_without_extension + ".h"
    write_atomically(tflite_path, model_bytes)
    write_c_header(model_bytes, header_path, array_name=re.sub(r"\W", "_", os.path.basename(path_without_extension)),
                   arena_bytes=arena_bytes)
    return tflite_path, header_path


def export_keras_file(keras_path, representative_X, output_path_without_extension, precision="int8"):
    """Exports a saved Keras model (e.g. a run's best_model.keras) the way the toolkit
    deploys and measures every network: one-sample batch, frozen graph, int8 (or float32).

    A plain TFLiteConverter.from_keras_model conversion of the same file gives a
    larger flatbuffer and arena than the toolkit's figures (docs/deploy.md).
    representative_X: training samples for int8 calibration, as the data hold them
    (float32 (N, length, 1), bytes / 255). The model converted is the device model
    (device_model): the samples are cut to its input length and turned
    into byte values for a byte-table network.
    Writes <output>.tflite and its C header <output>.h (with the measured arena).
    Returns the flatbuffer bytes.
    """
    model = device_model(keras.models.load_model(keras_path))
    samples = device_samples(representative_X, model.inputs[0].shape[1], takes_byte_values(model.inputs[0].dtype))
    model_bytes = convert_to_tflite(model, samples, precision)
    save_deployed(model_bytes, output_path_without_extension, tflm_arena(model_bytes)["total"])
    return model_bytes
