"""A learned byte table: each byte value 0..255 picks a row of embedding_dim values.

Payload bytes are categories (a record type, a command letter), not intensities: 0x41 is not "a
bit more" than 0x40. In the Keras model the table is Keras' own Embedding (after the data's
bytes / 255 are turned back into byte values), so a saved model loads with plain Keras; on the
device it is a lone GATHER on an int8 table, fed the session's bytes as they are (int32).
"""

from hwnas.common.numbers import is_integer
from hwnas.network.deployed_cost import DEPLOYED_COST
from hwnas.network.encodings.base import BYTE_VALUES, Encoding, byte_values

INDEX_BYTES = 4  # TFLite's GATHER takes int32 (or int64) positions; TFLM has no uint8 ones
BYTE_VALUE_LAYER, BYTE_SHAPE_LAYER, TABLE_LAYER_NAME = "byte_values", "byte_shape", "byte_table"
# The GATHER's op, tensors and quantization in the flatbuffer, and what it keeps in TFLM's arena, by
# precision: fitted with the blocks' entries (hwnas.network.deployed_cost; calibrate_deployed_cost.py).
GATHER_FLASH_BYTES = {"int8": 332, "float32": 292}
GATHER_PERSISTENT_BYTES = {"int8": 104, "float32": 136}


class Embedding(Encoding):
    """A learned table of 256 rows of embedding_dim values."""

    name = "embedding"
    parameters = ("embedding_dim",)
    reads_bytes_only = True
    weights_layer = TABLE_LAYER_NAME
    layer_names = (BYTE_VALUE_LAYER, BYTE_SHAPE_LAYER, TABLE_LAYER_NAME)
    code = 1

    @classmethod
    def check(cls, embedding_dim=None):
        if not is_integer(embedding_dim) or embedding_dim < 1:
            raise ValueError(f"the embedding encoding needs an integer embedding_dim >= 1, got {embedding_dim!r}")

    @property
    def channels(self):
        return self.embedding_dim

    def short_name(self):
        return f"emb{self.embedding_dim}"

    def describe(self):
        return (f"the first {self.length} bytes of each session, each looked up in a learned "
                f"{BYTE_VALUES} x {self.embedding_dim} byte table")

    @classmethod
    def describe_choices(cls, choices):
        return f"tables of {', '.join(map(str, choices['embedding_dim']))} values per byte"

    def size(self):
        return self.embedding_dim

    def weight_shapes(self):
        return {TABLE_LAYER_NAME: [(BYTE_VALUES, self.embedding_dim)]}

    def n_params(self):
        return BYTE_VALUES * self.embedding_dim

    def flops(self):
        """keras-flops (TensorFlow's profiler registry) counts no FLOP for a gather."""
        return 0

    def tensor_sizes(self):
        """The input, then the table's rows."""
        return [self.length, self.length * self.embedding_dim]

    def deployed_ops(self):
        """The GATHER of the table's rows, then the RESHAPE to 4-D that the converter puts before CONV_2D."""
        rows = self.length * self.embedding_dim
        return [("GATHER", rows), ("RESHAPE", rows)]

    def deployed_tensor_bytes(self, activation_bytes):
        rows = self.length * self.embedding_dim * activation_bytes
        return [self.length * INDEX_BYTES, rows, rows]

    def deployed_flash_bytes(self, precision):
        """The table at the weights' width, and the GATHER's op, tensors and quantization."""
        weight_bytes = DEPLOYED_COST[precision]["weight_bytes"]
        return BYTE_VALUES * self.embedding_dim * weight_bytes + GATHER_FLASH_BYTES[precision]

    def deployed_persistent_bytes(self, precision):
        """What the GATHER keeps in TFLM's arena for the whole run (its node and tensors)."""
        return GATHER_PERSISTENT_BYTES[precision]

    def keras_layers(self):
        import keras  # here, not at the top: the search's settings read the encodings without Keras
        # b / 255 * 255 + 0.5 lies within b + 0.5 +- 1e-4, which the Embedding's cast to int truncates to b.
        return [keras.layers.Rescaling(255.0, offset=0.5, name=BYTE_VALUE_LAYER),
                keras.layers.Reshape((self.length,), name=BYTE_SHAPE_LAYER),
                keras.layers.Embedding(BYTE_VALUES, self.embedding_dim, name=TABLE_LAYER_NAME)]

    def device_input(self, X):
        """The session's bytes as int32 byte values (N, length)."""
        return byte_values(X)

    @classmethod
    def device_front(cls, model, length):
        """An int32 input of byte values, then a ByteTable to hold the Embedding's table."""
        from hwnas.network.encodings.byte_table import ByteTable
        table = model.get_layer(TABLE_LAYER_NAME)
        byte_table = ByteTable(table.output_dim, name=TABLE_LAYER_NAME)
        return (length,), "int32", [byte_table], [(byte_table, table.get_weights())]
