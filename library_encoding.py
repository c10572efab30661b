"""What a network sees of a session: its input stage, searched and priced like a block.

The data hold each session as its bytes (uint8 (N, length, 1)) or as bytes scaled to
[0, 1] (float32, library_load_and_split_data). A network reads the first `length` of
them, in one of two encodings:
  scaled:    each byte as its value / 255, one channel (the original toolkit's input);
  embedding: each byte value 0..255 looks up a row of a learned table of 256 rows of
             embedding_dim values. Payload bytes are categories (a record type, a
             command letter), not intensities: 0x41 is not "a bit more" than 0x40.

Two Keras forms of a network, with the same weights:
  the model (Net.ins_keras_model, what training fits and best_model.keras holds) takes
      the data's samples as they are, and its first layers do the input stage with
      Keras' own layers (Cropping1D to the first bytes; Rescaling back to byte values,
      Reshape and Embedding for the table), so a saved model loads with plain Keras;
  the device model (library_deploy.device_model) is what the microcontroller runs: it
      takes what the device feeds (the first bytes scaled, or, for the table, the bytes
      as they are, int32) and starts with a lone GATHER.

The stage's cost (parameters, FLOPs, tensors, flatbuffer and arena bytes, the
operators a device runs) is computed here from its settings alone, as a block's
is, so the search checks it before any Keras model exists.
"""
import numpy as np

from library_load_and_split_data import scaled

ENCODINGS = ("scaled", "embedding")
BYTE_VALUES = 256
INDEX_BYTES = 4  # TFLite's GATHER takes int32 (or int64) positions; TFLM has no uint8 ones
# The input stage's layers in a network's Keras model, by name (library_deploy.device_model finds them so).
CROP_LAYER, BYTE_VALUE_LAYER, BYTE_SHAPE_LAYER, TABLE_LAYER_NAME = "first_bytes", "byte_values", "byte_shape", "byte_table"
INPUT_STAGE_LAYERS = (CROP_LAYER, BYTE_VALUE_LAYER, BYTE_SHAPE_LAYER, TABLE_LAYER_NAME)


class InputStage:
    """How a network reads a session: encoding ('scaled' or 'embedding'), length (its
    first bytes; None = all the data has, until placed), embedding_dim (values per
    byte of the embedding's table; None for 'scaled')."""

    def __init__(self, encoding="scaled", length=None, embedding_dim=None):
        if encoding not in ENCODINGS:
            raise ValueError(f"input encoding must be one of {ENCODINGS}, got {encoding!r}")
        if encoding == "embedding" and not _is_count(embedding_dim):
            raise ValueError(f"the embedding encoding needs an integer embedding_dim >= 1, got {embedding_dim!r}")
        if length is not None and not _is_count(length):
            raise ValueError(f"input length must be an integer >= 1 or None, got {length!r}")
        self.encoding, self.length = encoding, length
        self.embedding_dim = int(embedding_dim) if encoding == "embedding" else None

    @classmethod
    def from_settings(cls, settings):
        """An InputStage from settings() of one (None or {}: scaled, every byte: the original's input)."""
        if isinstance(settings, InputStage):
            return settings
        return cls(**(settings or {}))

    def settings(self):
        return {"encoding": self.encoding, "length": self.length, "embedding_dim": self.embedding_dim}

    def copy(self, **changes):
        return InputStage(**dict(self.settings(), **changes))

    def placed(self, data_length):
        """This stage on data whose sessions are data_length bytes long: length None becomes
        data_length. Raises ValueError when the stage would read more than the data holds."""
        if self.length is not None and self.length > data_length:
            raise ValueError(f"an input length of {self.length} bytes is longer than the data's "
                             f"{data_length}; the network can only read what each session holds")
        return self.copy(length=self.length or data_length)

    @property
    def channels(self):
        return 1 if self.encoding == "scaled" else self.embedding_dim

    @property
    def output_shape(self):
        """(length, channels) of what the first block reads."""
        return self.length, self.channels

    def short_name(self):
        """'in:scaled[<length>]' or 'in:emb<dim>[<length>]', the length the network reads."""
        name = "scaled" if self.encoding == "scaled" else f"emb{self.embedding_dim}"
        return f"in:{name}[{self.length}]"

    def describe(self):
        """One sentence a person reads: what the network reads of each session."""
        if self.encoding == "scaled":
            return f"the first {self.length} bytes of each session, each scaled to [0, 1]"
        return (f"the first {self.length} bytes of each session, each looked up in a learned "
                f"{BYTE_VALUES} x {self.embedding_dim} byte table")

    # ----- cost (the Keras model) -------------------------------------------------
    def weight_shapes(self):
        """{layer name: its weights' shapes}: the byte table's, when there is one."""
        return {TABLE_LAYER_NAME: [(BYTE_VALUES, self.embedding_dim)]} if self.encoding == "embedding" else {}

    def n_params(self):
        return BYTE_VALUES * self.embedding_dim if self.encoding == "embedding" else 0

    def flops(self):
        """0: nothing is computed on the scaled input, and keras-flops (TensorFlow's
        profiler registry) counts no FLOP for a gather."""
        return 0

    def tensor_sizes(self):
        """Element counts of the stage's tensors in the Keras model: the input, then the table's rows."""
        sizes = [self.length]
        if self.encoding == "embedding":
            sizes.append(self.length * self.embedding_dim)
        return sizes

    # ----- cost (the deployed model) ----------------------------------------------
    def deployed_ops(self):
        """The TFLite operators of the stage and each one's work in elements: the GATHER of
        the table's rows, then the RESHAPE to 4-D that the converter puts before CONV_2D."""
        if self.encoding == "scaled":
            return [("RESHAPE", self.length)]
        rows = self.length * self.embedding_dim
        return [("GATHER", rows), ("RESHAPE", rows)]

    def deployed_tensor_bytes(self, activation_bytes):
        """Bytes of the model's input and of each stage op's output, in op order (what TFLM
        plans in its arena). activation_bytes: 1 for int8, 4 for float32."""
        if self.encoding == "scaled":
            return [self.length * activation_bytes] * 2
        rows = self.length * self.embedding_dim * activation_bytes
        return [self.length * INDEX_BYTES, rows, rows]

    def deployed_flash_bytes(self, cost):
        """Bytes the stage adds to the flatbuffer beyond the model's fixed bytes: the table at
        the weights' width and the GATHER's op, tensors and quantization (cost: a
        library_block.DEPLOYED_COST entry)."""
        if self.encoding == "scaled":
            return 0
        return BYTE_VALUES * self.embedding_dim * cost["weight_bytes"] + cost["gather_op"]

    def deployed_persistent_bytes(self, cost):
        """Bytes the GATHER keeps in TFLM's arena for the whole run (its node and tensors)."""
        return cost["persistent_gather"] if self.encoding == "embedding" else 0

    # ----- Keras and data ---------------------------------------------------------
    def keras_layers(self, data_length):
        """The model's first layers: from the data's samples (batch, data_length, 1), bytes / 255,
        to what the first block reads (batch, length, channels)."""
        import keras  # here, not at the top: the search's settings read this module's choices without Keras
        layers = []
        if self.length < data_length:
            layers.append(keras.layers.Cropping1D((0, data_length - self.length), name=CROP_LAYER))
        if self.encoding == "embedding":
            # b / 255 * 255 + 0.5 lies within b + 0.5 +- 1e-4, which the Embedding's cast to int truncates to b.
            layers += [keras.layers.Rescaling(255.0, offset=0.5, name=BYTE_VALUE_LAYER),
                       keras.layers.Reshape((self.length,), name=BYTE_SHAPE_LAYER),
                       keras.layers.Embedding(BYTE_VALUES, self.embedding_dim, name=TABLE_LAYER_NAME)]
        return layers

    def device_input(self, X):
        """What the device model takes, from the data's samples X (uint8 bytes or float32 bytes
        / 255, (N, data length, 1)): their first `length` values scaled (scaled), or as int32
        byte values (N, length) (embedding)."""
        X = np.asarray(X[:, :self.length])
        return scaled(X) if self.encoding == "scaled" else byte_values(X)


def byte_values(X):
    """The int32 byte values 0..255 of samples, shape (N, length): of bytes (uint8) as they are,
    of samples scaled to [0, 1] (bytes / 255) scaled back. Raises ValueError when X is neither
    (the embedding reads bytes, nothing else)."""
    X = np.asarray(X)
    if X.dtype == np.uint8:
        return X.reshape(len(X), -1).astype(np.int32)
    values = np.asarray(X, dtype=np.float32).reshape(len(X), -1) * 255.0
    rounded = np.rint(values)
    if values.size and (np.abs(values - rounded).max() > 1e-3 or rounded.min() < 0 or rounded.max() > 255):
        raise ValueError("the embedding encoding reads bytes: the samples must be byte values / 255 "
                         "(as load_and_preprocess_data makes them), these are not")
    return rounded.astype(np.int32)


def check_byte_data(X, what):
    """Raises ValueError naming `what` unless X is bytes scaled to [0, 1]."""
    try:
        byte_values(X)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None


def takes_byte_values(input_dtype):
    """Whether a device model's input of this dtype is a byte table's: int32 byte values
    (an int8 input is scaled bytes, quantized)."""
    return np.dtype(input_dtype) == np.int32


def device_samples(X, length, integer_input):
    """Samples X as a device model of that input length takes them: the data's samples (uint8
    bytes or float32 bytes / 255, (N, data length, 1)) are cut to length and scaled, or, for an
    integer input (a byte table's), turned into byte values; integer samples are byte values already."""
    X = np.asarray(X)[:, :length]
    if not integer_input:
        return scaled(X)
    return X.reshape(len(X), length).astype(np.int32) if X.dtype.kind in "iu" else byte_values(X)


def _is_count(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1
