"""Where a network's evaluation time goes, and training before vs now (a documented command, not a timed test).

    python tests/benchmarks/benchmark_training.py [--networks 8] [--epochs 15]
    python tests/benchmarks/benchmark_training.py --where

--where measures, on the smart-start network (fold 0 of the demo data, batch 64), where one
network's training time goes: the first epoch (tracing) against the next, with Keras building
the optimizer and metrics inside the traced step (traced twice) and with hwnas.network.net building
them first (traced once); an epoch of fit against bare training steps; each layer's
forward and backward pass alone; and TensorFlow's ops in an epoch of fit, by op type.

For 8 fixed architectures of the demo data (the smart-start network and 7 random
valid ones of the default search space, seeds fixed) it trains each as the
default run does (2 of 5 folds, up to --epochs epochs, batch 64) twice, in
alternating order: as before (a new model built, compiled and traced for every
fold) and as now (hwnas.network.net: one compiled model per network, re-initialised for
each fold, the fold's own seed). It prints per network: seconds before and now,
samples per second, the fraction of this machine's measured single-thread
matrix-multiply FLOP rate that training reaches (3 x the forward FLOPs of the cost
model per sample), the validation accuracy before and now, and the other steps of
an evaluation (keras-flops, int8 conversion, the TFLM run). One TensorFlow thread,
as each worker of the default run has. Run it on an otherwise idle machine.
"""
import argparse
import collections
import glob
import math
import os
import statistics
import tempfile
import time

import benchmark_setup  # noqa: E402,F401  (the project and the tests' helpers on the path)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from hwnas.common.quiet import quiet_native_output, quiet_tensorflow_logs  # noqa: E402

with quiet_native_output():
    import keras  # noqa: E402
    import numpy as np  # noqa: E402
    import tensorflow as tf  # noqa: E402

    from hwnas.data import idx as data_lib  # noqa: E402
    from hwnas.network import training  # noqa: E402
    from hwnas.data.metrics import compute_descriptors  # noqa: E402
    from hwnas.network.net import net_from_architecture  # noqa: E402
    from benchmark_throughput import architectures_and_tasks  # noqa: E402
quiet_tensorflow_logs()
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

N_FOLDS_TRAINED = 2


def matmul_gflops(size=1024, repeats=20):
    """This machine's single-thread float32 matrix-multiply rate (GFLOP/s), the best of three."""
    a, b = tf.random.normal((size, size)), tf.random.normal((size, size))
    multiply = tf.function(lambda x, y: tf.matmul(x, y))
    multiply(a, b).numpy()
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            result = multiply(a, b)
        result.numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 * repeats / best / 1e9


def train_as_before(net, folds):
    """The training of hwnas.network.net before this change: a new model built, compiled and traced
    for each fold (same seeds, callbacks and settings). Returns (validation accuracy, epochs)."""
    settings, accuracies, epochs = net.train_settings, [], 0
    for i_fold in range(N_FOLDS_TRAINED):
        X_train, X_val, Y_train, Y_val = data_lib.get_fold_split(net.data.X_train, net.data.Y_train, folds, i_fold)
        keras.utils.set_random_seed(settings["seed"] + i_fold)
        model = net.ins_keras_model()
        model.compile(optimizer=keras.optimizers.Adam(settings["learning_rate"]),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        callbacks = [keras.callbacks.TerminateOnNaN(),
                     keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings["patience"],
                                                   restore_best_weights=True),
                     keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                       patience=max(1, settings["patience"] // 2))]
        history = model.fit(X_train, Y_train, validation_data=(X_val, Y_val), epochs=settings["epochs"],
                            batch_size=settings["batch_size"], callbacks=callbacks, verbose=0)
        epochs += len(history.history["loss"])
        accuracies.append(compute_descriptors(Y_val, model.predict(X_val, batch_size=512, verbose=0))["accuracy"])
        if i_fold == 0:
            model.predict(net.data.X_test, batch_size=512, verbose=0)  # as before: the best fold's test predictions
        del model
        keras.backend.clear_session()
    return float(np.mean(accuracies)), epochs


def train_now(net, folds):
    net.proxy_train_routine(True, folds, N_FOLDS_TRAINED)
    keras.backend.clear_session()
    return net.val_score, net.epochs_trained


def timed(function, *arguments):
    start = time.perf_counter()
    result = function(*arguments)
    return time.perf_counter() - start, result


def first_and_second_epoch(model, X_train, Y_train, X_val, Y_val):
    """Seconds of a model's first epoch (fit with validation: tracing included) and of its second."""
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        model.fit(X_train, Y_train, validation_data=(X_val, Y_val), epochs=1, batch_size=64, verbose=0)
        seconds.append(time.perf_counter() - start)
    return seconds


def milliseconds_per_call(function, argument, repeats=100):
    function(argument)
    start = time.perf_counter()
    for _ in range(repeats):
        result = function(argument)
    tf.nest.map_structure(lambda tensor: tensor.numpy(), result)
    return (time.perf_counter() - start) / repeats * 1e3


def where_the_time_goes(data, folds):
    from hwnas.strategy.search_space import SMART_START_BLOCKS, SMART_START_HEAD
    architecture = {"blocks": [dict(settings) for settings in SMART_START_BLOCKS], "head": SMART_START_HEAD}
    X_train, X_val, Y_train, Y_val = data_lib.get_fold_split(data.X_train, data.Y_train, folds, 0)
    print(f"smart-start network, fold 0: {len(X_train)} training sessions, batch 64, 1 thread\n")
    print("tracing: seconds of the first epoch (fit + validation) and of the second, 3 times each")
    for repeat in range(3):
        net = net_from_architecture(architecture, None, data, {"seed": repeat})
        lazy = net.ins_keras_model()  # as before: Keras creates the optimizer's variables while tracing
        lazy.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
        lazy_seconds = first_and_second_epoch(lazy, X_train, Y_train, X_val, Y_val)
        keras.backend.clear_session()
        built_seconds = first_and_second_epoch(training.compiled_model(net), X_train, Y_train, X_val, Y_val)
        keras.backend.clear_session()
        print(f"  built while tracing: {lazy_seconds[0]:.2f} s then {lazy_seconds[1]:.2f} s; "
              f"built first (hwnas.network.net): {built_seconds[0]:.2f} s then {built_seconds[1]:.2f} s")
    net = net_from_architecture(architecture, None, data, {"seed": 0})
    model = training.compiled_model(net)
    steps = math.ceil(len(X_train) / 64)
    epoch_seconds = min(first_and_second_epoch(model, X_train, Y_train, X_val, Y_val)[1] for _ in range(2))
    loss_function = keras.losses.CategoricalCrossentropy()
    x_batch, y_batch = tf.constant(X_train[:64]), tf.constant(Y_train[:64])

    @tf.function
    def bare_step(x):
        with tf.GradientTape() as tape:
            loss = loss_function(y_batch, model(x, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    step_ms = milliseconds_per_call(bare_step, x_batch)
    print(f"\nan epoch in fit (with validation): {epoch_seconds * 1e3 / steps:.1f} ms per step of 64; "
          f"a bare training step (GradientTape + Adam): {step_ms:.1f} ms")
    print("\neach layer alone, forward + backward pass at batch 64:")
    inputs, total = x_batch, 0.0
    for layer in model.layers:
        def forward_backward(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                outputs = layer(x, training=True)
            return tape.gradient(outputs, [x] + layer.trainable_variables)
        layer_ms = milliseconds_per_call(tf.function(forward_backward), inputs)
        outputs = layer(inputs, training=True)
        total += layer_ms
        print(f"  {layer.name:<14} {str(tuple(inputs.shape)):>15} -> {str(tuple(outputs.shape)):<15} {layer_ms:6.2f} ms")
        inputs = outputs
    print(f"  sum of the layers: {total:.1f} ms (each measured in its own call)")
    print("\nTensorFlow's ops in an epoch of fit (its profiler; with it on, ops take longer than without):")
    ops_of_an_epoch(model, X_train, Y_train, X_val, Y_val)


def ops_of_an_epoch(model, X_train, Y_train, X_val, Y_val, n_shown=12):
    """Prints the seconds of an epoch's TensorFlow ops (fit and validation) by op type, from
    the profiler's trace (an XSpace protobuf, read with TensorFlow's own schema)."""
    try:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    except ImportError:
        print("  (this TensorFlow has no tsl.profiler.protobuf.xplane_pb2 to read the trace with)")
        return
    with tempfile.TemporaryDirectory() as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        model.fit(X_train, Y_train, validation_data=(X_val, Y_val), epochs=1, batch_size=64, verbose=0)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)[0], "rb") as trace:
            space.ParseFromString(trace.read())
    seconds_by_op = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the threads that run the ops
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name  # "<node path>:<op type>"
                if ":" in name and "::" not in name:  # not the executor's own events
                    seconds_by_op[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12
    total = sum(seconds_by_op.values())
    for op, seconds in seconds_by_op.most_common(n_shown):
        print(f"  {op:<26} {seconds:6.3f} s {seconds / total:6.1%}")
    print(f"  all ops: {total:.2f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--where", action="store_true", help="where one network's training time goes")
    arguments = parser.parse_args()
    X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(seed=0)
    folds = data_lib.fold_index(X_train, y_train, 5, seed=0)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    data = data_lib.SessionData(X_train, data_lib.one_hot(y_train, n_classes), X_test,
                                data_lib.one_hot(y_test, n_classes))
    if arguments.where:
        return where_the_time_goes(data, folds)
    with tempfile.TemporaryDirectory() as run_dir:
        tasks, _ = architectures_and_tasks(data, arguments.networks - 1, arguments.epochs, run_dir)
    from hwnas.strategy.search_space import SMART_START_BLOCKS, SMART_START_HEAD
    smart_start = {"blocks": [dict(settings, dropout_rate=0.0) for settings in SMART_START_BLOCKS],
                   "head": SMART_START_HEAD}
    architectures = [smart_start] + [tasks[index]["architecture"] for index in sorted(tasks)]
    peak = matmul_gflops()
    n_samples = len(X_train) - len(X_train) // len(folds)  # training samples of a fold (about)
    print(f"single-thread float32 matmul: {peak:.1f} GFLOP/s; {len(architectures)} networks, "
          f"{N_FOLDS_TRAINED} folds x up to {arguments.epochs} epochs, ~{n_samples} training sessions per fold\n",
          flush=True)
    header = (f"{'net':>3} {'params':>6} {'MFLOPs':>7} {'before s':>8} {'now s':>6} {'ratio':>5} {'samples/s':>9} "
              f"{'of matmul':>9} {'val before':>10} {'val now':>7} {'flops s':>7} {'int8 s':>6} {'TFLM s':>6}  "
              f"architecture")
    print(header, flush=True)
    rows = []
    for index, architecture in enumerate(architectures):
        settings = {"epochs": arguments.epochs, "seed": 1000 + index}
        before_net = net_from_architecture(architecture, None, data, settings)
        now_net = net_from_architecture(architecture, None, data, settings)
        if index % 2 == 0:  # alternate which goes first, so a drift of the machine hits both alike
            before_seconds, (before_val, before_epochs) = timed(train_as_before, before_net, folds)
            now_seconds, (now_val, now_epochs) = timed(train_now, now_net, folds)
        else:
            now_seconds, (now_val, now_epochs) = timed(train_now, now_net, folds)
            before_seconds, (before_val, before_epochs) = timed(train_as_before, before_net, folds)
        flops_seconds, _ = timed(now_net.keras_flops)
        export_seconds, model_bytes = timed(now_net.export_tflite)
        tflm_seconds, _ = timed(now_net.measure_deployed, model_bytes)
        forward_flops = now_net.hw_measures()[2]
        samples_per_second = n_samples * now_epochs / now_seconds
        fraction = 3 * forward_flops * samples_per_second / (peak * 1e9)
        row = dict(before=before_seconds, now=now_seconds, before_val=before_val, now_val=now_val,
                   samples_per_second=samples_per_second, fraction=fraction, epochs=(before_epochs, now_epochs),
                   deploy=flops_seconds + export_seconds + tflm_seconds)
        rows.append(row)
        print(f"{index:>3} {now_net.hw_measures()[0]:>6} {forward_flops / 1e6:>7.2f} {before_seconds:>8.1f} "
              f"{now_seconds:>6.1f} {before_seconds / now_seconds:>5.2f} {samples_per_second:>9.0f} "
              f"{fraction:>9.2%} {before_val:>10.4f} {now_val:>7.4f} {flops_seconds:>7.2f} {export_seconds:>6.2f} "
              f"{tflm_seconds:>6.2f}  {now_net.architecture_text()}", flush=True)
    total_before, total_now = sum(r["before"] for r in rows), sum(r["now"] for r in rows)
    print(f"\ntraining, all {len(rows)} networks: before {total_before:.1f} s, now {total_now:.1f} s: "
          f"{total_before / total_now:.2f}x (per network, median ratio "
          f"{statistics.median(r['before'] / r['now'] for r in rows):.2f}x)")
    print(f"validation accuracy, mean: before {np.mean([r['before_val'] for r in rows]):.4f}, "
          f"now {np.mean([r['now_val'] for r in rows]):.4f} (same seeds: equal unless the order of float "
          f"operations differs)")
    print(f"epochs run (both folds), before = now on every network: "
          f"{all(r['epochs'][0] == r['epochs'][1] for r in rows)}")
    print(f"training reaches {statistics.median(r['fraction'] for r in rows):.2%} of the matmul FLOP rate "
          f"(median); keras-flops + int8 conversion + TFLM: {np.mean([r['deploy'] for r in rows]):.2f} s per "
          f"network, {np.mean([r['deploy'] for r in rows]) / (total_now / len(rows)):.1%} of its training")


if __name__ == "__main__":
    main()
