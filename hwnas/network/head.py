"""A network's head: the pooling (GlobalAveragePooling1D or Flatten) and the Dense classifier, placed
on the last block's output, with its cost computed here as a block's is (hwnas.network.block) and the
input stage's (hwnas.network.input_stage): parameters, FLOPs, the operators a device runs, the tensors
TFLM plans, flatbuffer and persistent bytes.
"""
HEADS = ("gap", "flatten")  # GlobalAveragePooling1D (the specification's) or Flatten
CLASSIFIER = "classifier"  # the name of the Dense layer


class Head:
    """kind ('gap' or 'flatten') then Dense(num_classes, softmax), on an input of input_shape
    (length, channels): the last block's output (or the input stage's, without blocks)."""

    def __init__(self, kind, num_classes, input_shape):
        if kind not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {kind!r}")
        self.kind, self.num_classes = kind, num_classes
        self.length, self.channels = input_shape

    @property
    def features(self):
        """What the classifier reads: the channels (GAP) or every element (Flatten)."""
        return self.channels if self.kind == "gap" else self.length * self.channels

    def weight_shapes(self):
        """{layer name: its weights' shapes}: the classifier's kernel and bias."""
        return {CLASSIFIER: [(self.features, self.num_classes), (self.num_classes,)]}

    def n_params(self):
        return self.features * self.num_classes + self.num_classes

    def flops(self):
        """keras-flops' count: GAP's mean 1 per input element; Dense's MatMul 2 per weight, BiasAdd 1
        and Softmax 5 per class (TensorFlow's registry)."""
        pooling = self.length * self.channels if self.kind == "gap" else 0
        return pooling + 2 * self.features * self.num_classes + 6 * self.num_classes

    def deployed_ops(self):
        """The TFLite operators and their work, as the converter makes them (a test compares them):
        GAP goes back to (length, channels) and takes the MEAN over the length; Flatten is a
        RESHAPE unless the length is 1 (FULLY_CONNECTED then reads the tensor as it is)."""
        elements = self.length * self.channels
        if self.kind == "gap":
            features = [("RESHAPE", elements), ("MEAN", elements)]
        else:
            features = [("RESHAPE", elements)] if self.length > 1 else []
        return [*features, ("FULLY_CONNECTED", self.features * self.num_classes), ("SOFTMAX", self.num_classes)]

    def deployed_tensors(self):
        """The head's TFLite activation tensors (elements, in op order), the DEPLOYED_COST entries
        of its fixed flash and persistent bytes, and the scratch bytes its ops ask TFLM for
        ({index of the op among the head's: [bytes]})."""
        elements = self.length * self.channels
        if self.kind == "gap":  # RESHAPE to 3-D, then MEAN over the length
            # TFLM's MEAN asks for three scratch buffers in its Prepare: an int32 sum per
            # output element, an int per input dimension (3) and per reduced axis (1).
            # They raise the arena only on tiny networks, whose tensors leave no gap for them.
            pooled = ([elements, self.channels], "gap_ops", "persistent_gap", {1: [4 * self.channels, 4 * 3, 4 * 1]})
        elif self.length > 1:  # RESHAPE to (1, features)
            pooled = ([elements], "flatten_op", "persistent_flatten", {})
        else:
            pooled = ([], None, None, {})
        tensors, flash_entry, persistent_entry, scratch = pooled
        return tensors + [self.num_classes, self.num_classes], flash_entry, persistent_entry, scratch

    def deployed_flash_bytes(self, cost):
        """Bytes the head adds to the flatbuffer (cost: a hwnas.network.deployed_cost.DEPLOYED_COST entry)."""
        _, flash_entry, _, _ = self.deployed_tensors()
        return (self.features * self.num_classes * cost["weight_bytes"] + cost["per_class"] * self.num_classes
                + (cost[flash_entry] if flash_entry else 0))

    def deployed_persistent_bytes(self, cost):
        _, _, persistent_entry, _ = self.deployed_tensors()
        return cost["persistent_per_class"] * self.num_classes + (cost[persistent_entry] if persistent_entry else 0)

    def keras_layers(self):
        import keras  # here, not at the top: the search's settings read this module's choices without Keras
        pooling = (keras.layers.GlobalAveragePooling1D(name="head_gap") if self.kind == "gap"
                   else keras.layers.Flatten(name="head_flatten"))
        return [pooling, keras.layers.Dense(self.num_classes, activation="softmax", name=CLASSIFIER)]
