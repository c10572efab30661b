"""The toolkit's export against the plain TFLiteConverter.from_keras_model recipe.

    python tests/benchmarks/benchmark_export.py [--networks 12]

Draws random valid networks of the default search space (default thresholds) on
600 demo sessions, trains each for one epoch, saves it as a .keras file, and
converts that file twice to int8 TFLite with the same calibration samples: the
toolkit's way (hwnas.network.deploy.export_keras_file: one-sample batch, graph frozen
first) and the recipe most tutorials give (TFLiteConverter.from_keras_model).
Prints the flatbuffer size and TFLM's arena of both, and how much larger the
plain recipe's are.
"""
import argparse
import os
import tempfile

import benchmark_setup  # noqa: E402,F401  (the project and the tests' helpers on the path)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from hwnas.network import deploy  # noqa: E402
from hwnas.data import idx as data_lib  # noqa: E402
from hwnas.common.quiet import quiet_native_output, quiet_tensorflow_logs  # noqa: E402
from library_nas import NAS  # noqa: E402

DEFAULT_THRESHOLDS = dict(params_thr=20_000, flops_thr=2_000_000, flash_thr=32_000, ram_thr=16_000,
                          max_tens_thr=16_000)


def plain_recipe(keras_path, representative_X):
    """int8 conversion as the usual tutorial writes it, from the saved Keras file."""
    import keras
    model = keras.models.load_model(keras_path)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample[None]] for sample in representative_X)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with quiet_native_output():
        return converter.convert()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", type=int, default=12)
    arguments = parser.parse_args()
    quiet_tensorflow_logs()
    images = data_lib.read_idx3(data_lib.DEFAULT_IMAGES_PATH)[:600]
    labels = data_lib.read_idx1(data_lib.DEFAULT_LABELS_PATH)[:600]
    X, y = data_lib.preprocess_data(images, labels)
    n_classes = int(labels.max()) + 1
    data = data_lib.SessionData(X[:500], data_lib.one_hot(y[:500], n_classes), X[500:], data_lib.one_hot(y[500:], n_classes))
    folds = data_lib.fold_index(X[:500], y[:500], 2)
    folder = tempfile.mkdtemp(prefix="benchmark_export_")
    nas = NAS(run_dir=os.path.join(folder, "run"), preloaded_data=data, seed=1, epochs=1, **DEFAULT_THRESHOLDS)
    representative = data.X_train[:200]
    flash_ratios, arena_ratios = [], []
    print(f"{'network':<70} {'flash B toolkit/plain':>22} {'arena B toolkit/plain':>22}")
    for index in range(arguments.networks):
        net = nas.space.random_network(nas.max_depth, (), "a benchmark network")
        net.proxy_train_routine(True, folds, 1)
        keras_path = os.path.join(folder, f"net{index}.keras")
        net.save_keras(keras_path)
        ours = deploy.export_keras_file(keras_path, representative, os.path.join(folder, f"net{index}_int8"))
        plain = plain_recipe(keras_path, representative)
        ours_arena, plain_arena = deploy.tflm_arena(ours)["total"], deploy.tflm_arena(plain)["total"]
        flash_ratios.append(len(plain) / len(ours))
        arena_ratios.append(plain_arena / ours_arena)
        print(f"{net.architecture_text()[:70]:<70} {len(ours):>10}/{len(plain):<11} {ours_arena:>10}/{plain_arena:<11}")
    flash_extra, arena_extra = 100 * (np.array(flash_ratios) - 1), 100 * (np.array(arena_ratios) - 1)
    print(f"\nplain recipe against the toolkit's export, {arguments.networks} networks: flash "
          f"{flash_extra.min():+.1f} % to {flash_extra.max():+.1f} % (median {np.median(flash_extra):+.1f} %), "
          f"arena {arena_extra.min():+.1f} % to {arena_extra.max():+.1f} % (median {np.median(arena_extra):+.1f} %)")


if __name__ == "__main__":
    main()
