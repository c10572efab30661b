"""What a network sees of a session: its input stage, searched and priced like a block.

The data hold each session as its bytes (uint8 (N, length, 1)) or as bytes scaled to [0, 1]
(float32, hwnas.data.idx). A network reads the first `length` of them, in one of the encodings
of hwnas.network.encodings (bytes / 255, or a learned byte table), each of which owns its layers,
its cost and what a device feeds it: this module only holds the stage's settings, crops the
session to its length, and asks its encoding for the rest.

Two Keras forms of a network, with the same weights:
  the model (Net.ins_keras_model, what training fits and best_model.keras holds) takes
      the data's samples as they are, and starts with the input stage's layers (a crop to the
      first bytes, then the encoding's), so a saved model loads with plain Keras;
  the device model (hwnas.network.deploy.device_model) is what the microcontroller runs: it
      takes what the device feeds, its encoding's device layers first.
"""
import numpy as np

from hwnas.common.numbers import is_integer
from hwnas.network.encodings import ENCODINGS, PARAMETERS
from hwnas.network.encodings.base import byte_values, check_byte_data, device_samples, takes_byte_values  # noqa: F401

CROP_LAYER = "first_bytes"  # the model's first layer when a network reads fewer bytes than the data hold
# The input stage's layers in a network's Keras model, by name (hwnas.network.deploy.device_model finds them so).
INPUT_STAGE_LAYERS = (CROP_LAYER, *(name for encoding in ENCODINGS.values() for name in encoding.layer_names))


class InputStage:
    """How a network reads a session: encoding (a name of hwnas.network.encodings.ENCODINGS), length
    (its first bytes; None = all the data has, until placed), and the encoding's own settings
    (parameters: embedding_dim, the values per byte of the embedding's table)."""

    def __init__(self, encoding="scaled", length=None, **parameters):
        if encoding not in ENCODINGS:
            raise ValueError(f"input encoding must be one of {tuple(ENCODINGS)}, got {encoding!r}")
        unknown = sorted(set(parameters) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"an input stage has no settings {unknown}; its encodings' own: {list(PARAMETERS)}")
        kind = ENCODINGS[encoding]
        own = {name: parameters.get(name) for name in kind.parameters}
        kind.check(**own)
        if length is not None and not (is_integer(length) and length >= 1):
            raise ValueError(f"input length must be an integer >= 1 or None, got {length!r}")
        self.encoding, self.length = encoding, length
        self.parameters = {name: int(value) for name, value in own.items()}
        self.kind = kind(length, **self.parameters)  # the encoding, which owns what this stage costs and builds

    def __getattr__(self, name):  # the encoding's own settings read as the stage's (stage.embedding_dim)
        if name in PARAMETERS:
            return self.__dict__.get("parameters", {}).get(name)
        raise AttributeError(name)

    @classmethod
    def from_settings(cls, settings):
        """An InputStage from settings() of one (None or {}: scaled, every byte: the original's input)."""
        if isinstance(settings, InputStage):
            return settings
        settings = dict(settings or {})
        return cls(**{name: value for name, value in settings.items() if value is not None or name == "length"})

    def settings(self):
        """The stage as plain data: encoding, length and every encoding's own settings (None where not its own)."""
        return {"encoding": self.encoding, "length": self.length,
                **{name: self.parameters.get(name) for name in PARAMETERS}}

    def copy(self, **changes):
        settings = dict(self.settings(), **changes)
        own = ENCODINGS[settings["encoding"]].parameters
        return InputStage(settings["encoding"], settings["length"], **{name: settings[name] for name in own})

    def placed(self, data_length):
        """This stage on data whose sessions are data_length bytes long: length None becomes
        data_length. Raises ValueError when the stage would read more than the data holds."""
        if self.length is not None and self.length > data_length:
            raise ValueError(f"an input length of {self.length} bytes is longer than the data's "
                             f"{data_length}; the network can only read what each session holds")
        return self.copy(length=self.length or data_length)

    @property
    def channels(self):
        return self.kind.channels

    @property
    def output_shape(self):
        """(length, channels) of what the first block reads."""
        return self.length, self.channels

    @property
    def weights_layer(self):
        """The Keras layer holding the stage's trained weights (None: it has none)."""
        return self.kind.weights_layer

    def short_name(self):
        """'in:scaled[<length>]' or 'in:emb<dim>[<length>]': the encoding and the length the network reads."""
        return f"in:{self.kind.short_name()}[{self.length}]"

    def describe(self):
        """One sentence a person reads: what the network reads of each session."""
        return self.kind.describe()

    def predictor_features(self):
        """The stage as the predictor reads it: its encoding's number, its size, its length (log scale)."""
        import math
        return [self.kind.code, self.kind.size(), math.log1p(self.length)]

    # ----- cost: the encoding's ----------------------------------------------------------
    def weight_shapes(self):
        """{layer name: its weights' shapes}."""
        return self.kind.weight_shapes()

    def n_params(self):
        return self.kind.n_params()

    def flops(self):
        return self.kind.flops()

    def tensor_sizes(self):
        """Element counts of the stage's tensors in the Keras model, the input first."""
        return self.kind.tensor_sizes()

    def deployed_ops(self):
        """The TFLite operators of the stage and each one's work in elements."""
        return self.kind.deployed_ops()

    def deployed_tensor_bytes(self, activation_bytes):
        """Bytes of the model's input and of each stage op's output, in op order (what TFLM
        plans in its arena). activation_bytes: 1 for int8, 4 for float32."""
        return self.kind.deployed_tensor_bytes(activation_bytes)

    def deployed_flash_bytes(self, precision):
        """Bytes the stage adds to the flatbuffer beyond the model's fixed bytes."""
        return self.kind.deployed_flash_bytes(precision)

    def deployed_persistent_bytes(self, precision):
        """Bytes the stage's ops keep in TFLM's arena for the whole run."""
        return self.kind.deployed_persistent_bytes(precision)

    # ----- Keras and data ---------------------------------------------------------
    def keras_layers(self, data_length):
        """The model's first layers: from the data's samples (batch, data_length, 1), bytes / 255,
        to what the first block reads (batch, length, channels)."""
        import keras  # here, not at the top: the search's settings read this module's choices without Keras
        layers = []
        if self.length < data_length:
            layers.append(keras.layers.Cropping1D((0, data_length - self.length), name=CROP_LAYER))
        return layers + self.kind.keras_layers()

    def device_input(self, X):
        """What the device model takes, from the data's samples X (uint8 bytes or float32 bytes
        / 255, (N, data length, 1)): their first `length` values as the encoding feeds them."""
        return self.kind.device_input(np.asarray(X[:, :self.length]))

