"""The original toolkit's input: each byte / 255 on one channel."""
from hwnas.network.encodings.base import Encoding


class Scaled(Encoding):
    """Each byte as its value / 255, one channel; on the device the int8 input is the byte
    quantized (b - 128 for the scale 1/255 and zero point -128 the converter chooses)."""

    name = "scaled"
    code = 0

    def short_name(self):
        return "scaled"

    def describe(self):
        return f"the first {self.length} bytes of each session, each scaled to [0, 1]"

    def deployed_ops(self):
        """The RESHAPE to 4-D that the converter puts before CONV_2D."""
        return [("RESHAPE", self.length)]

    def deployed_tensor_bytes(self, activation_bytes):
        return [self.length * activation_bytes] * 2

    @classmethod
    def recognises(cls, layer_names):
        return True  # no layer of its own: a model whose input stage is a crop alone, or nothing
