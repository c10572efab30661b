"""One Conv1D block: its settings, shape arithmetic, hardware cost and Keras layers.

A block is Conv1D -> BatchNormalization (not in the first block) -> activation
-> optional max/average pooling -> dropout. Its cost is computed here from its
settings and input shape alone, without TensorFlow, so the search can reject
a candidate before any Keras model exists.
"""
import json
import math

from hwnas.network.deployed_cost import DEPLOYED_COST

# Activations whose TFLite int8 kernels exist in TensorFlow Lite Micro.
ACTIVATIONS = ("relu", "relu6", "tanh")
POOLINGS = ("none", "max", "avg")
PADDINGS = ("same", "valid")
POOLING_OPS = {"max": "MAX_POOL_2D", "avg": "AVERAGE_POOL_2D"}  # the TFLite operator of each pooling


class Block:
    """A Conv1D block placed at `block_index` on an input of (input_size, input_channels).

    Settings (what the search asks for, always within its choices): filters,
    kernel_size, stride, padding ('same'/'valid'), activation, pooling
    ('none'/'max'/'avg'), pool_size, dropout_rate. On a short input some of them
    cannot be built as asked; calculate_output_size then works out what is built
    (kernel_size_used, pooling_used, pool_size_used) and lists each adjustment,
    without touching the settings, so a child never inherits an adjusted value.
    `layer_weights` maps a layer name to its trained weight arrays (None if untrained).

    The original toolkit's keyword names are accepted and mean the same block:
    n_filters (= filters); is_pool with is_max_pool / is_avg_pool (= pooling
    'max' / 'avg', 'none' when is_pool is False); is_dropout=False (= dropout_rate
    0); input_shape (= input_size, input_channels); nas_saver_name, the log file
    dump() appends to.
    """

    def __init__(self, filters=None, kernel_size=None, stride=1, padding="same", activation="relu",
                 pooling="max", pool_size=2, dropout_rate=0.1,
                 input_size=None, input_channels=1, block_index=0, layer_weights=None, *,
                 n_filters=None, is_pool=None, is_max_pool=None, is_avg_pool=None, is_dropout=None,
                 input_shape=None, nas_saver_name=None, source=None):
        filters, pooling, pool_size, dropout_rate, input_size, input_channels = _from_original_keywords(
            filters, n_filters, pooling, pool_size, is_pool, is_max_pool, is_avg_pool, dropout_rate, is_dropout,
            input_size, input_channels, input_shape)
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if filters is None or kernel_size is None:
            raise ValueError("a block needs filters (or n_filters) and kernel_size")
        if min(filters, kernel_size, stride, pool_size) < 1:
            raise ValueError("filters, kernel_size, stride and pool_size must be >= 1")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.padding = padding
        self.activation = activation
        self.pooling = pooling
        self.pool_size = int(pool_size)
        self.dropout_rate = float(dropout_rate)
        self.input_size = input_size
        self.input_channels = int(input_channels)
        self.block_index = int(block_index)
        self.layer_weights = layer_weights
        self.nas_saver_name = nas_saver_name
        self.source = source  # (child_id, block index) of the evaluated block it was copied from (hwnas.strategy.inheritance)
        self.adjustments = []
        self.kernel_size_used, self.pooling_used, self.pool_size_used = self.kernel_size, self.pooling, self.pool_size
        self.conv_output_size = None
        self.output_size = None
        if input_size is not None:
            self.calculate_output_size()

    # ----- settings ---------------------------------------------------------
    SETTING_NAMES = ("filters", "kernel_size", "stride", "padding", "activation",
                     "pooling", "pool_size", "dropout_rate")

    def settings(self):
        """The block's searchable settings as a plain dict (as asked, not as adjusted)."""
        return {name: getattr(self, name) for name in self.SETTING_NAMES}

    def built_settings(self):
        """The settings of the layers actually built (after the adjustments a short input forces)."""
        return dict(self.settings(), kernel_size=self.kernel_size_used, pooling=self.pooling_used,
                    pool_size=self.pool_size_used)

    def copy(self, **changes):
        """A new block with the same settings, place and weights, `changes` applied."""
        arguments = dict(self.settings(), input_size=self.input_size,
                         input_channels=self.input_channels, block_index=self.block_index,
                         layer_weights=self.layer_weights, nas_saver_name=self.nas_saver_name, source=self.source)
        arguments.update(changes)
        return Block(**arguments)

    @property
    def has_batchnorm(self):
        # The first block sees raw bytes scaled to [0, 1]; normalising them again buys nothing.
        return self.block_index > 0

    @property
    def output_channels(self):
        return self.filters

    def short_name(self):
        """Compact text such as 'C16k5s2same+BN-relu-max2-d0.10'."""
        pooling = "" if self.pooling_used == "none" else f"-{self.pooling_used}{self.pool_size_used}"
        batchnorm = "+BN" if self.has_batchnorm else ""
        return (f"C{self.filters}k{self.kernel_size_used}s{self.stride}{self.padding}{batchnorm}"
                f"-{self.activation}{pooling}-d{self.dropout_rate:.2f}")

    # ----- shape arithmetic -------------------------------------------------
    def calculate_output_size(self):
        """Output length of the block on its input; works out what can be built.

        Follows Keras' arithmetic: Conv1D 'same' gives ceil(L / stride), 'valid'
        floor((L - kernel) / stride) + 1; pooling is 'valid' with stride =
        pool_size, giving floor(L / pool_size). Every length stays >= 1: a 'valid'
        kernel longer than the input is built as long as the input; a pool longer
        than the conv output is built as long as it, or left out when that is 1.
        The settings stay as asked; what is built is kernel_size_used,
        pooling_used and pool_size_used, and each adjustment is listed in
        self.adjustments. Returns the output length.
        """
        if self.input_size is None or self.input_size < 1:
            raise ValueError(f"block {self.block_index}: input_size must be >= 1, got {self.input_size}")
        length = self.input_size
        self.adjustments = []
        self.kernel_size_used, self.pooling_used, self.pool_size_used = self.kernel_size, self.pooling, self.pool_size
        if self.padding == "valid" and self.kernel_size > length:
            self.adjustments.append(f"kernel_size {self.kernel_size} built as {length} (input length {length})")
            self.kernel_size_used = length
        if self.padding == "same":
            conv_length = math.ceil(length / self.stride)
        else:
            conv_length = (length - self.kernel_size_used) // self.stride + 1
        if self.pooling != "none" and self.pool_size > conv_length:
            if conv_length >= 2:
                self.adjustments.append(f"pool_size {self.pool_size} built as {conv_length} "
                                        f"(conv output length {conv_length})")
                self.pool_size_used = conv_length
            else:
                self.adjustments.append(f"pooling {self.pooling} left out (conv output length 1)")
                self.pooling_used = "none"
        if self.pooling_used == "none" or self.pool_size_used == 1:
            output_length = conv_length
        else:
            output_length = conv_length // self.pool_size_used
        self.conv_output_size = conv_length
        self.output_size = output_length
        return output_length

    # ----- hardware cost ----------------------------------------------------
    def n_params(self):
        """Parameters as Keras counts them: conv weights and bias, BN's four vectors."""
        conv = self.kernel_size_used * self.input_channels * self.filters + self.filters
        batchnorm = 4 * self.filters if self.has_batchnorm else 0
        return conv + batchnorm

    def flops(self):
        """Inference FLOPs with keras-flops' convention (TensorFlow's profiler registry).

        Conv multiply-adds count 2 per weight and output, the bias add 1 per
        output; Keras' inference BatchNormalization is 6 per channel (rsqrt 2,
        add, two muls, sub) plus a mul and an add per element; pooling counts
        pool_size per output element; activations and dropout count 0.
        """
        conv_outputs = self.conv_output_size * self.filters
        total = 2 * self.kernel_size_used * self.input_channels * conv_outputs + conv_outputs
        if self.has_batchnorm:
            total += 2 * conv_outputs + 6 * self.filters
        if self.pooling_used != "none":
            total += self.pool_size_used * self.output_size * self.filters
        return total

    def deployed_ops(self):
        """The operators the deployed (TFLite) block runs and each one's work, as
        [(operator, work)]: CONV_2D by multiply-accumulates (BatchNormalization is
        folded into it and ReLU/ReLU6 fused), TANH by elements, MAX_POOL_2D /
        AVERAGE_POOL_2D by elements read; dropout is gone. What a target device
        profile (hwnas.devices) prices."""
        conv_outputs = self.conv_output_size * self.filters
        ops = [("CONV_2D", conv_outputs * self.kernel_size_used * self.input_channels)]
        if self.activation == "tanh":
            ops.append(("TANH", conv_outputs))
        if self.pooling_used != "none":
            ops.append((POOLING_OPS[self.pooling_used], self.output_size * self.filters * self.pool_size_used))
        return ops

    def tensor_sizes(self):
        """Element counts of the block's activation tensors, in order: conv output, block output."""
        return [self.conv_output_size * self.filters, self.output_size * self.filters]

    # ----- deployed cost (TFLite for TensorFlow Lite Micro) -----------------
    def deployed_tensor_sizes(self):
        """Element counts of the activation tensors the block's TFLite ops write, in op order.

        The converter folds BatchNormalization into the convolution and fuses
        ReLU/ReLU6 into it; tanh stays an op of its own; dropout disappears.
        """
        conv_outputs = self.conv_output_size * self.filters
        sizes = [conv_outputs]
        if self.activation == "tanh":
            sizes.append(conv_outputs)
        if self.pooling_used != "none":
            sizes.append(self.output_size * self.filters)
        return sizes

    def deployed_flash_bytes(self, precision="int8"):
        """Bytes the block adds to the TFLite flatbuffer.

        Weights at the precision's width, plus per-filter bytes (bias, and for
        int8 the per-channel scale and zero point of weights and bias) and the
        fixed bytes of each op and tensor (tables, shapes, names), calibrated
        against the converter (DEPLOYED_COST, tests/benchmarks/calibrate_deployed_cost.py).
        """
        cost = DEPLOYED_COST[precision]
        weights = self.kernel_size_used * self.input_channels * self.filters * cost["weight_bytes"]
        total = weights + cost["per_filter"] * self.filters + cost["conv_op"]
        if self.activation == "tanh":
            total += cost["tanh_op"] + (cost["tanh_after_batchnorm"] if self.has_batchnorm else 0)
        if self.pooling_used != "none":
            total += cost["pool_op"]
        return total

    def deployed_persistent_bytes(self, precision="int8"):
        """Bytes the block's ops keep for the whole run in TFLM's arena (its tail):
        node structures, evaluation tensors and per-op data (for int8 convolutions,
        a multiplier and a shift per filter)."""
        cost = DEPLOYED_COST[precision]
        total = cost["persistent_conv"] + cost["persistent_per_filter"] * self.filters
        if self.activation == "tanh":
            total += cost["persistent_tanh"]
        if self.pooling_used != "none":
            total += cost["persistent_pool"]
        return total

    # ----- records ----------------------------------------------------------
    def to_dict(self):
        return dict(self.settings(), block_index=self.block_index, input_size=self.input_size,
                    input_channels=self.input_channels, output_size=self.output_size)

    def describe(self):
        """The block's configuration and cost as readable JSON text."""
        record = dict(self.to_dict(), n_params=self.n_params(), flops=self.flops(),
                      trained=self.layer_weights is not None)
        if self.adjustments:
            record["adjustments"] = self.adjustments
        return json.dumps(record, indent=2)

    def dump(self):
        """describe()'s text, also appended to the log file nas_saver_name when the block
        has one (the original toolkit's habit). Returns the text."""
        text = self.describe()
        if self.nas_saver_name is not None:
            with open(self.nas_saver_name, "a") as log_file:
                log_file.write(text + "\n")
        return text

    # ----- Keras ------------------------------------------------------------
    def weight_shapes(self):
        """{layer name: the shapes of its weights} of the block's layers that have weights, as Keras
        makes them: the convolution's kernel and bias, BatchNormalization's four vectors."""
        names = self.layer_names()
        shapes = {names["conv"]: [(self.kernel_size_used, self.input_channels, self.filters), (self.filters,)]}
        if self.has_batchnorm:
            shapes[names["batchnorm"]] = [(self.filters,)] * 4
        return shapes

    def layer_names(self):
        prefix = f"b{self.block_index}"
        return {"conv": f"{prefix}_conv", "batchnorm": f"{prefix}_bn", "activation": f"{prefix}_act",
                "pooling": f"{prefix}_pool", "dropout": f"{prefix}_drop"}

    def create_layer(self, input_shape=None):
        """Keras layers of the block, in order.

        input_shape: (length, channels); when given, a keras.Input comes first
        so the list can start a Sequential model.
        """
        import keras  # here, not at the top: the search's settings read this module's choices without Keras
        names = self.layer_names()
        layers = [] if input_shape is None else [keras.Input(shape=tuple(input_shape))]
        layers.append(keras.layers.Conv1D(self.filters, self.kernel_size_used, strides=self.stride,
                                          padding=self.padding, name=names["conv"]))
        if self.has_batchnorm:
            layers.append(keras.layers.BatchNormalization(momentum=0.9, name=names["batchnorm"]))
        layers.append(keras.layers.Activation(self.activation, name=names["activation"]))
        if self.pooling_used == "max":
            layers.append(keras.layers.MaxPooling1D(self.pool_size_used, name=names["pooling"]))
        elif self.pooling_used == "avg":
            layers.append(keras.layers.AveragePooling1D(self.pool_size_used, name=names["pooling"]))
        if self.dropout_rate > 0:
            layers.append(keras.layers.Dropout(self.dropout_rate, name=names["dropout"]))
        return layers


def _from_original_keywords(filters, n_filters, pooling, pool_size, is_pool, is_max_pool, is_avg_pool,
                            dropout_rate, is_dropout, input_size, input_channels, input_shape):
    """This project's settings from the original toolkit's keyword names (see Block).

    Returns (filters, pooling, pool_size, dropout_rate, input_size, input_channels).
    Raises ValueError when both spellings are given and disagree.
    """
    if n_filters is not None:
        if filters is not None and filters != n_filters:
            raise ValueError(f"filters={filters} and n_filters={n_filters} disagree; give one")
        filters = n_filters
    if is_pool is not None or is_max_pool is not None or is_avg_pool is not None:
        if is_max_pool and is_avg_pool:
            raise ValueError("is_max_pool and is_avg_pool are both True; a block has one pooling")
        if is_pool is False or (is_pool is None and not (is_max_pool or is_avg_pool)):
            pooling = "none"
        else:
            pooling = "avg" if is_avg_pool else "max"  # the original pools by max unless told avg
    if pool_size is None:  # the original passes pool_size=None for blocks without pooling
        if pooling != "none":
            raise ValueError("pool_size=None for a block with pooling")
        pool_size = 2
    if is_dropout is False:
        dropout_rate = 0.0
    if input_shape is not None:
        length, channels = tuple(input_shape) if len(input_shape) == 2 else (input_shape[0], 1)
        if input_size is not None and input_size != length:
            raise ValueError(f"input_size={input_size} and input_shape={tuple(input_shape)} disagree")
        input_size, input_channels = length, channels
    return filters, pooling, pool_size, dropout_rate, input_size, input_channels
