"""Random networks for checking the deployed-cost estimates against the real toolchain
(used by test_deployed_cost.py and calibrate_deployed_cost.py)."""
import numpy as np

from hwnas.data import idx as data_lib
from hwnas.network.block import ACTIVATIONS, Block
from hwnas.network.encodings import ENCODINGS
from hwnas.network.net import Net

# The NAS's default search space, on input lengths and class counts other than the demo's.
SEARCH_SPACE = {"filters": [4, 8, 16, 32, 64], "kernel_size": [3, 5, 7, 9], "stride": [1, 2],
                "padding": ["same", "valid"], "activation": list(ACTIVATIONS),
                "pooling": ["none", "max", "avg"], "pool_size": [2, 3, 4]}
INPUT_LENGTHS = [64, 100, 256, 784, 1500]
CLASS_COUNTS = [2, 3, 6, 10, 20]
EMBEDDING_DIMS = [2, 4, 8, 16]


def random_input_stage(rng, data_length, encoding=None):
    """Input stage settings: the encoding given (else a random one), reading all of the
    data's bytes or a random shorter part of them."""
    encoding = encoding or rng.choice(list(ENCODINGS))
    length = rng.choice([None, rng.randint(16, data_length)])
    return {"encoding": encoding, "length": length,
            "embedding_dim": rng.choice(EMBEDDING_DIMS) if encoding == "embedding" else None}


def deployment_test_network(rng, precision, max_params=80_000, encoding=None):
    """A random valid Net (an input stage of the encoding given or a random one, 1 to 6 blocks,
    either head) on random byte data of random shape."""
    while True:
        length, n_classes = rng.choice(INPUT_LENGTHS), rng.choice(CLASS_COUNTS)
        X = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 256, (20, length, 1)) / np.float32(255)
        Y = data_lib.one_hot(np.arange(20) % n_classes, n_classes)
        data = data_lib.SessionData(X.astype(np.float32), Y, X.astype(np.float32), Y)
        settings = [dict({name: rng.choice(choices) for name, choices in SEARCH_SPACE.items()}, dropout_rate=0.1)
                    for _ in range(rng.randint(1, 6))]
        net = Net([Block(**block_settings) for block_settings in settings], None, data,
                  head=rng.choice(["gap", "flatten"]), deploy_precision=precision,
                  input_stage=random_input_stage(rng, length, encoding))
        if net.hw_measures()[0] <= max_params:
            return net


def randomize_weights(model, seed):
    """Gives every layer nonzero weights, as training would: the converter drops all-zero
    biases of untrained Dense layers, which would make the flatbuffer unlike a trained one."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new_weights = [rng.normal(0.0, 0.1, w.shape).astype(np.float32) for w in weights]
        if len(weights) == 4:  # BatchNormalization: gamma, beta, moving mean, moving variance > 0
            new_weights[3] = np.abs(new_weights[3]) + 0.5
        layer.set_weights(new_weights)
