"""What every input encoding is asked, and what feeding a device model bytes takes.

An encoding turns each of a session's first `length` bytes into what the first block reads. A
subclass owns everything about itself (hwnas.network.input_stage.InputStage only holds one and
asks it): its own settings beside the length, its Keras layers after the crop, the layers the
device model starts with and what a device feeds it, its cost in the Keras model (parameters,
FLOPs, tensors) and in the deployed one (TFLite operators, flash, TFLM's arena), and how a person
and the predictor read it. Its cost is computed from its settings alone, so the search checks a
network before any Keras model exists.
"""
import numpy as np

from hwnas.data.idx import scaled

BYTE_VALUES = 256  # the values a byte takes


class Encoding:
    """One input encoding on an input of `length` bytes, with its own settings (parameters)."""

    name = None  # what input_encoding_choices and the records call it
    parameters = ()  # its own settings beside the length; each is drawn from the search's <parameter>_choices
    reads_bytes_only = False  # True: it reads byte values (0..255), so the data must be bytes
    weights_layer = None  # the name of the Keras layer holding its trained weights (None: it has none)
    layer_names = ()  # the names of its Keras layers (the device model finds the input stage by them)
    code = 0  # its number among the encodings, as the predictor reads it

    def __init__(self, length, **parameters):
        self.length = length
        for name in self.parameters:
            setattr(self, name, parameters[name])

    @classmethod
    def check(cls, **parameters):
        """Raises ValueError naming a parameter the encoding cannot be built with."""

    # ----- what a person and the predictor read ------------------------------------------------
    channels = 1  # values per byte the first block reads

    def short_name(self):
        return self.name

    def describe(self):
        """What the network reads of each session, as a sentence."""
        raise NotImplementedError

    @classmethod
    def describe_choices(cls, choices):
        """The encoding's own choices ({parameter: values}), as words for the log ('' when none)."""
        return ""

    def size(self):
        """Its size as the predictor reads it: its own parameter's value, 0 without one."""
        return 0

    # ----- cost in the Keras model -------------------------------------------------------------
    def weight_shapes(self):
        return {}

    def n_params(self):
        return 0

    def flops(self):
        return 0

    def tensor_sizes(self):
        """Element counts of its tensors in the Keras model, the input first."""
        return [self.length]

    # ----- cost in the deployed model ----------------------------------------------------------
    def deployed_ops(self):
        """[(TFLite operator, its work in elements)], in order, up to the 4-D tensor CONV_2D reads."""
        raise NotImplementedError

    def deployed_tensor_bytes(self, activation_bytes):
        """Bytes of the model's input and of each of its ops' outputs, in op order (what TFLM plans)."""
        raise NotImplementedError

    def deployed_flash_bytes(self, precision):
        """Bytes it adds to the flatbuffer beyond the model's fixed bytes."""
        return 0

    def deployed_persistent_bytes(self, precision):
        """Bytes its ops keep in TFLM's arena for the whole run."""
        return 0

    # ----- Keras and the device ------------------------------------------------------------
    def keras_layers(self):
        """Its layers in the network's Keras model, after the crop to `length` (they take the
        data's samples as they are: (batch, length, 1), bytes / 255)."""
        return []

    def device_input(self, X):
        """What the device model takes, from the data's samples X cut to length."""
        return scaled(X)

    @classmethod
    def recognises(cls, layer_names):
        """Whether a Keras model whose input stage has these layers is of this encoding."""
        return bool(cls.layer_names) and set(cls.layer_names) <= set(layer_names)

    @classmethod
    def device_front(cls, model, length):
        """What the device model starts with in place of the input stage of a Keras model of this
        encoding: (input shape, input dtype, layers, [(layer, the trained weights it takes once built)])."""
        return (length, 1), "float32", [], []


def byte_values(X):
    """The int32 byte values 0..255 of samples, shape (N, length): of bytes (uint8) as they are,
    of samples scaled to [0, 1] (bytes / 255) scaled back. Raises ValueError when X is neither
    (an encoding that reads bytes reads nothing else)."""
    X = np.asarray(X)
    if X.dtype == np.uint8:
        return X.reshape(len(X), -1).astype(np.int32)
    values = np.asarray(X, dtype=np.float32).reshape(len(X), -1) * 255.0
    rounded = np.rint(values)
    if values.size and (np.abs(values - rounded).max() > 1e-3 or rounded.min() < 0 or rounded.max() > 255):
        raise ValueError("the embedding encoding reads bytes: the samples must be byte values / 255 "
                         "(as load_and_preprocess_data makes them), these are not")
    return rounded.astype(np.int32)


def is_byte_data(X):
    """Whether X holds bytes: uint8, or byte values / 255."""
    try:
        byte_values(X)
    except ValueError:
        return False
    return True


def check_byte_data(X, what):
    """Raises ValueError naming `what` unless X is bytes (uint8, or byte values / 255)."""
    try:
        byte_values(X)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None


def takes_byte_values(input_dtype):
    """Whether a device model's input of this dtype is byte values (int32; an int8 input is
    scaled bytes, quantized)."""
    return np.dtype(input_dtype) == np.int32


def device_samples(X, length, integer_input):
    """Samples X as a device model of that input length takes them: the data's samples (uint8
    bytes or float32 bytes / 255, (N, data length, 1)) are cut to length and scaled, or, for an
    integer input, turned into byte values; integer samples are byte values already."""
    X = np.asarray(X)[:, :length]
    if not integer_input:
        return scaled(X)
    return X.reshape(len(X), length).astype(np.int32) if X.dtype.kind in "iu" else byte_values(X)
