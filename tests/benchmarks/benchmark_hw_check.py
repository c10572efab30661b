"""Benchmark: the analytic hardware check against building the Keras model and profiling it.

Times, on 200 random architectures of the default search space on the demo data's
shape, (a) Net.hw_measures() (what mutate_network_and_control calls for every
mutation attempt) and (b) building the Keras model plus keras-flops' FLOPs count
(what a check without the cost model would need). Prints both medians and their ratio.

    python tests/benchmarks/benchmark_hw_check.py [--networks 200]
"""
import argparse
import os
import random
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import benchmark_setup  # noqa: E402,F401  (the project and the tests' helpers on the path)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from hwnas.data import idx as data_lib  # noqa: E402
from deployment_networks import SEARCH_SPACE  # noqa: E402
from hwnas.network.net import Net, blocks_from_settings, keras_flops_count  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=200)
    arguments = parser.parse_args()
    images = data_lib.read_idx3(data_lib.DEFAULT_IMAGES_PATH)
    labels = data_lib.read_idx1(data_lib.DEFAULT_LABELS_PATH)
    X, y = data_lib.preprocess_data(images[:64], labels[:64])
    Y = data_lib.one_hot(y, int(labels.max()) + 1)
    data = data_lib.SessionData(X, Y, X, Y)
    rng = random.Random(0)
    analytic_seconds, keras_seconds = [], []
    for index in range(arguments.networks):
        settings = [dict({name: rng.choice(choices) for name, choices in SEARCH_SPACE.items()}, dropout_rate=0.1)
                    for _ in range(rng.randint(1, 6))]
        net = Net(blocks_from_settings(settings, data.input_shape), None, data, head=rng.choice(["gap", "flatten"]))
        start = time.perf_counter()
        analytic = net.hw_measures()
        analytic_seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        model = net.device_model()
        measured = (model.count_params(), keras_flops_count(model))
        keras_seconds.append(time.perf_counter() - start)
        assert measured == (analytic[0], analytic[2]), net.architecture_text()
        del model
        if index % 20 == 19:
            keras.backend.clear_session()
            print(f"\r{index + 1}/{arguments.networks} architectures", end="", flush=True)
    print()
    analytic_median, keras_median = statistics.median(analytic_seconds), statistics.median(keras_seconds)
    print(f"analytic check (Net.hw_measures):       median {analytic_median * 1e3:8.3f} ms")
    print(f"Keras model + keras-flops (params, FLOPs): median {keras_median * 1e3:8.3f} ms")
    print(f"ratio: the analytic check is {keras_median / analytic_median:.0f}x faster "
          f"(p90 analytic {np.percentile(analytic_seconds, 90) * 1e3:.3f} ms)")


if __name__ == "__main__":
    main()
