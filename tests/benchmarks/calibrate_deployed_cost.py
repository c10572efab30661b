"""Refits the fixed-byte entries of hwnas.network.deployed_cost.DEPLOYED_COST against the real toolchain.

Converts random networks (random input lengths, class counts and weights) to
TFLite, measures the flatbuffer and TensorFlow Lite Micro's arena, and fits each
precision's per-op, per-filter and per-class bytes by least squares. Run it after
upgrading TensorFlow or tflite-micro, paste the printed entries into
DEPLOYED_COST, then run tests/test_deployed_cost.py.

    python tests/benchmarks/calibrate_deployed_cost.py            # 200 networks per precision
    python tests/benchmarks/calibrate_deployed_cost.py --networks 50
    python tests/benchmarks/calibrate_deployed_cost.py --check    # only print how far today's estimates are off
"""
import argparse
import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import benchmark_setup  # noqa: E402,F401  (the project and the tests' helpers on the path)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from hwnas.network import deploy  # noqa: E402
from hwnas.network.deployed_cost import DEPLOYED_COST  # noqa: E402
from deployment_networks import deployment_test_network, randomize_weights  # noqa: E402
from hwnas.network.deploy import device_model  # noqa: E402

# Features of the flatbuffer's bytes beyond the weights, and of TFLM's persistent bytes.
FLASH_ENTRIES = ("model_fixed", "per_filter", "conv_op", "tanh_op", "tanh_after_batchnorm", "pool_op",
                 "flatten_op", "gap_ops", "per_class", "gather_op")
PERSISTENT_ENTRIES = ("persistent_fixed", "persistent_per_filter", "persistent_conv", "persistent_tanh",
                      "persistent_pool", "persistent_flatten", "persistent_gap", "persistent_per_class",
                      "persistent_gather")


def features(net):
    """Counts that multiply each entry, for one network."""
    blocks = net.block_list
    last_length = blocks[-1].output_size
    counts = {"model_fixed": 1, "per_filter": sum(b.filters for b in blocks), "conv_op": len(blocks),
              "tanh_op": sum(b.activation == "tanh" for b in blocks),
              "tanh_after_batchnorm": sum(b.activation == "tanh" and b.has_batchnorm for b in blocks),
              "pool_op": sum(b.pooling_used != "none" for b in blocks),
              "flatten_op": int(net.head == "flatten" and last_length > 1), "gap_ops": int(net.head == "gap"),
              "per_class": net.num_classes,
              "gather_op": sum(op == "GATHER" for op, _ in net.input_stage.deployed_ops())}
    persistent = {"persistent_fixed": 1, "persistent_per_filter": counts["per_filter"],
                  "persistent_conv": counts["conv_op"], "persistent_tanh": counts["tanh_op"],
                  "persistent_pool": counts["pool_op"], "persistent_flatten": counts["flatten_op"],
                  "persistent_gap": counts["gap_ops"], "persistent_per_class": counts["per_class"],
                  "persistent_gather": counts["gather_op"]}
    return counts, persistent


def known_flash_bytes(net, precision):
    """The weight bytes (the byte table's included), which need no fitting."""
    width = DEPLOYED_COST[precision]["weight_bytes"]
    weights = sum(b.kernel_size_used * b.input_channels * b.filters for b in net.block_list)
    return width * (weights + net.head_stage.features * net.num_classes + net.input_stage.n_params())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=200, help="networks per precision")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--check", action="store_true",
                        help="measure the networks of tests/test_deployed_cost.py and print the estimates' errors")
    arguments = parser.parse_args()
    if arguments.check:
        check(arguments.networks)
        return
    for precision in DEPLOYED_COST:
        rng = random.Random(arguments.seed)
        flash_rows, persistent_rows, flash_y, persistent_y = [], [], [], []
        for index in range(arguments.networks):
            net = deployment_test_network(rng, precision)
            model = net.ins_keras_model()
            randomize_weights(model, seed=index)
            model_bytes = deploy.convert_to_tflite(device_model(model), net.device_input(net.data.X_train), precision)
            arena = deploy.tflm_arena(model_bytes)
            counts, persistent = features(net)
            flash_rows.append([counts[name] for name in FLASH_ENTRIES])
            flash_y.append(len(model_bytes) - known_flash_bytes(net, precision))
            persistent_rows.append([persistent[name] for name in PERSISTENT_ENTRIES])
            persistent_y.append(arena["persistent"])
            keras.backend.clear_session()
            print(f"\r{precision}: {index + 1}/{arguments.networks} networks measured", end="", flush=True)
        print()
        fitted = {}
        for entries, rows, targets in ((FLASH_ENTRIES, flash_rows, flash_y),
                                       (PERSISTENT_ENTRIES, persistent_rows, persistent_y)):
            rows, targets = np.array(rows, float), np.array(targets, float)
            coefficients = np.round(np.linalg.lstsq(rows, targets, rcond=None)[0]).astype(int)
            residuals = rows @ coefficients - targets
            fitted.update(zip(entries, coefficients.tolist()))
            print(f"  {entries[0]}..: largest residual {np.abs(residuals).max():.0f} bytes")
        gather = {name: fitted.pop(name) for name in ("gather_op", "persistent_gather")}
        print(f"  DEPLOYED_COST['{precision}'] fixed entries: {fitted}")
        print(f"  the embedding encoding's GATHER (hwnas/network/encodings/embedding.py): "
              f"GATHER_FLASH_BYTES['{precision}'] = {gather['gather_op']}, "
              f"GATHER_PERSISTENT_BYTES['{precision}'] = {gather['persistent_gather']}")


def check(n_networks):
    """Prints the relative errors of the flash and arena estimates on unseen networks, per
    precision and input encoding."""
    from test_deployed_cost import measured_and_estimated
    from hwnas.network.input_stage import ENCODINGS
    for precision in DEPLOYED_COST:
        for encoding in ENCODINGS:
            rows = measured_and_estimated(precision, n_networks, 2026, encoding)
            flash_errors = [abs(net.hw_measures()[3] - flash) / flash for net, flash, _, _ in rows]
            ram_errors = [abs(net.hw_measures()[4] - arena["total"]) / arena["total"] for net, _, arena, _ in rows]
            exact = sum(net.deployed_arena_bytes()["activations"] == arena["activations"]
                        for net, _, arena, _ in rows)
            print(f"{precision}, {encoding}, {len(rows)} networks: flash error median {np.median(flash_errors):.2%}, "
                  f"max {max(flash_errors):.2%}; arena error median {np.median(ram_errors):.2%}, "
                  f"max {max(ram_errors):.2%}; activation plan exact for {exact}/{len(rows)}")


if __name__ == "__main__":
    main()
