"""The byte table's layer in the device model: a lone GATHER (the Embedding encoding's)."""
import keras
import tensorflow as tf

from hwnas.network.encodings.base import BYTE_VALUES


class ByteTable(keras.layers.Layer):
    """(batch, length) int32 byte values -> (batch, length, dim): row b of a learned 256 x dim
    table, by a direct gather: the device model's first layer, which converts to a lone GATHER
    (int8 table, int32 positions). Keras' Embedding, which the trained model holds, would not
    do: it guards against negative indices, which the TFLite converter turns into LESS, ADD,
    SELECT and GATHER, and TFLM has no SELECT kernel."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)

    def build(self, input_shape):
        self.table = self.add_weight(shape=(BYTE_VALUES, self.dim), initializer="uniform", name="table")

    def call(self, byte_values):
        return tf.gather(self.table, byte_values)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)

    def get_config(self):
        return dict(super().get_config(), dim=self.dim)
