"""A network's Keras model and its training: the model built from the network's description,
fitted fold by fold, and the trained weights kept with the network (hwnas.network.net.Net).

The data stay as they are held (the sessions' bytes, uint8, or float samples); the rows a step
needs are gathered and scaled batch by batch (batches), so training takes no float32 copy of a
fold and the memory a worker needs does not grow with the data set.

One compiled model serves every fold of an evaluation (tracing costs seconds, as much as a few
epochs of a small network); each fold starts from the weights a fresh model gets from the
fold's seed (the network's seed + the fold), or from where successive halving's previous rung
left it (hwnas.network.training_state). The score is the mean validation accuracy over the folds; the
best fold's weights are kept, and the test split is only predicted with them, never used to choose.
"""
import gc
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from hwnas.data import idx as data_lib
from hwnas.data.metrics import best_fold, compute_descriptors, mean_over_folds
from hwnas.network import training_state
from hwnas.network.head import CLASSIFIER

DEFAULT_TRAIN_SETTINGS = {"epochs": 20, "batch_size": 64, "patience": 5,
                          "learning_rate": 1e-3, "seed": 0, "verbose": 0}
PREDICT_BATCH = 512  # samples per prediction step


def batches(X, Y, indices, batch_size, shuffle_seed=None):
    """A tf.data pipeline of the rows indices of X (and of Y, when given), batch by batch, as
    the model takes them (hwnas.data.idx.scaled: bytes become float32 / 255 only
    in the batch). shuffle_seed: the order is shuffled from it anew each epoch (None: in order)."""
    indices = np.asarray(indices, dtype=np.int64)
    pipeline = tf.data.Dataset.from_tensor_slices(indices)
    if shuffle_seed is not None:
        pipeline = pipeline.shuffle(len(indices), seed=shuffle_seed, reshuffle_each_iteration=True)
    sample_shape = (None,) + tuple(X.shape[1:])

    def gather(batch_indices):
        return (data_lib.scaled(X[batch_indices]),) + ((Y[batch_indices],) if Y is not None else ())

    def load(batch_indices):
        outputs = tf.numpy_function(gather, [batch_indices], [tf.float32] * (1 if Y is None else 2))
        outputs[0].set_shape(sample_shape)
        if Y is None:
            return outputs[0]
        outputs[1].set_shape((None, Y.shape[1]))
        return tuple(outputs)

    options = tf.data.Options()
    options.threading.private_threadpool_size = 1  # the worker's one thread per network; the gather is light
    options.autotune.enabled = False
    return pipeline.batch(batch_size).map(load).prefetch(1).with_options(options)


class EpochClock(keras.callbacks.Callback):
    """Seconds of each epoch of a fit (validation included), appended to `seconds`: the first
    one beyond the others' is the tracing of the training and validation steps."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


class TimeLimit(keras.callbacks.Callback):
    """Stops a fit before the epoch that would end past deadline (time.monotonic()), with the best
    weights early stopping has kept (as early stopping itself would leave them)."""

    def __init__(self, deadline, early_stopping):
        super().__init__()
        self.deadline, self.early_stopping = deadline, early_stopping

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training or time.monotonic() + (time.monotonic() - self.started) <= self.deadline:
            return
        self.model.stop_training = True
        if self.early_stopping.best_weights is not None:
            self.model.set_weights(self.early_stopping.best_weights)


class EpochProgress(keras.callbacks.Callback):
    """A line per epoch on the console for a long training: its name, the epoch, the validation
    accuracy and loss, the seconds it took."""

    def __init__(self, name, epochs):
        super().__init__()
        self.name, self.epochs = name, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        print(f"{self.name}: epoch {epoch + 1}/{self.epochs}, validation accuracy {logs.get('val_accuracy', float('nan')):.4f}, "
              f"loss {logs.get('val_loss', float('nan')):.4f}, {time.perf_counter() - self.started:.1f} s", flush=True)


def predict(model, X, indices=None):
    """The model's outputs on the rows indices of X (None: all of them), batch by batch."""
    return model.predict(batches(X, None, np.arange(len(X)) if indices is None else indices, PREDICT_BATCH),
                         verbose=0)


class TrainingFailed(RuntimeError):
    """Training of a candidate diverged (NaN/inf loss) or raised; the search records it and goes on."""


def keras_model(net, load_weights=False):
    """The Keras model of net: a keras.Sequential that takes the data's samples (batch, length, 1)
    as they are; its first layers are the input stage's (hwnas.network.input_stage), then the blocks' and
    the head's. load_weights: with the trained weights; raises ValueError if net has none."""
    layers = [keras.Input(shape=net.input_shape), *net.input_stage.keras_layers(net.input_shape[0])]
    for block in net.block_list:
        layers.extend(block.create_layer())
    layers.extend(net.head_stage.keras_layers())
    model = keras.Sequential(layers, name="nas_net")
    if load_weights:
        if not net.trained:
            raise ValueError("ins_keras_model(load_weigths=True) on a network that was never trained")
        if net.input_weights is not None:
            model.get_layer(net.input_stage.weights_layer).set_weights(net.input_weights)
        for block in net.block_list:
            for name, weights in block.layer_weights.items():
                model.get_layer(name).set_weights(weights)
        model.get_layer(CLASSIFIER).set_weights(net.head_weights)
    return model


def store_weights(net, model):
    """Keeps model's trained weights with net's input stage, blocks and head, so the network can be rebuilt."""
    stage_layer = net.input_stage.weights_layer  # the encoding's trained weights (a byte table's), if any
    net.input_weights = model.get_layer(stage_layer).get_weights() if stage_layer else None
    layer_names = {layer.name for layer in model.layers}
    for block in net.block_list:
        block.layer_weights = {name: model.get_layer(name).get_weights() for name in block.layer_names().values()
                               if name in layer_names and model.get_layer(name).weights}
    net.head_weights = model.get_layer(CLASSIFIER).get_weights()


def compiled_model(net):
    """net's Keras model compiled for training, its optimizer's and metrics' variables built."""
    model = keras_model(net)
    model.compile(optimizer=keras.optimizers.Adam(net.train_settings["learning_rate"]),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    # Keras (TensorFlow backend, no distribution strategy) creates the optimizer's and the
    # metrics' variables inside the first traced train step, and a tf.function that creates
    # variables is traced a second time: building them here, eagerly on one session, saves
    # that second trace (1-2 s per network, docs/benchmark_training.md).
    model.optimizer.build(model.trainable_variables)
    x, y = data_lib.scaled(net.data.X_train[:1]), net.data.Y_train[:1]
    predicted = model(x)
    model.compute_loss(x, y, predicted)
    model.compute_metrics(x, y, predicted, sample_weight=None)
    model.reset_metrics()
    return model


def start_fold(net, model, i_fold):
    """Gives model the initial weights a fresh model gets for fold i_fold (its seed is the
    network's seed + i_fold) and a fresh optimizer: the fold trains as if on a new model."""
    keras.utils.set_random_seed(net.train_settings["seed"] + i_fold)
    fresh = keras_model(net)
    for layer, fresh_layer in zip(model.layers, fresh.layers):
        for variable, fresh_variable in zip(layer.variables, fresh_layer.variables):
            variable.assign(fresh_variable)  # weights, BatchNorm statistics, dropout's seed state
    for name, weights in (net.inherit or {}).get(i_fold, {}).items():  # a parent's trained layers of this fold
        model.get_layer(name).set_weights(weights)
    for variable in model.optimizer.variables:  # step count and Adam's moments (built by compiled_model)
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    model.optimizer.learning_rate = net.train_settings["learning_rate"]  # ReduceLROnPlateau lowers it
    del fresh


def fit_one_fold(net, model, is_train, folds, i_fold):
    """Fits model on fold i_fold from the fold's initial weights, or from where a previous rung
    left it (net.continue_from); returns (val metrics, validation accuracy after each epoch)."""
    settings, (X, Y) = net.train_settings, (net.data.X_train, net.data.Y_train)
    train_indices, val_indices = folds[i_fold]
    saved = (net.continue_from or {"folds": {}})["folds"].get(i_fold)
    if saved is None:
        start_fold(net, model, i_fold)
        seed = settings["seed"] + i_fold
    else:
        training_state.restore(model, saved)
        seed = training_state.continuation_seed(settings["seed"] + i_fold, saved["epochs_done"])
        keras.utils.set_random_seed(seed)
    epoch_val_accuracy = list(saved["epoch_val_accuracy"]) if saved else []
    # a fold ended by early stopping, or already at its budget (an inheriting network's shorter one), trains no more
    if is_train and not (saved and (saved["finished"] or saved["epochs_done"] >= settings["epochs"])):
        early_stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings["patience"],
                                                       restore_best_weights=True)
        # Halving the step before early stopping gives the net a second chance.
        reduce_lr = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                      patience=max(1, settings["patience"] // 2))
        fold_state = training_state.FoldTrainingState(early_stopping, reduce_lr, settings["epochs"],
                                                      epoch_val_accuracy, saved)
        epoch_seconds, fit_started = [], time.perf_counter()
        history = model.fit(batches(X, Y, train_indices, settings["batch_size"], shuffle_seed=seed),
                            validation_data=batches(X, Y, val_indices, PREDICT_BATCH),
                            initial_epoch=saved["epochs_done"] if saved else 0, epochs=settings["epochs"], shuffle=False,
                            callbacks=[keras.callbacks.TerminateOnNaN(), early_stopping, reduce_lr, fold_state,
                                       EpochClock(epoch_seconds), *net.callbacks,
                                       *([TimeLimit(net.deadline, early_stopping)] if net.deadline else [])],
                            verbose=settings["verbose"])
        losses = history.history.get("loss", [])
        if not losses or not all(math.isfinite(loss) for loss in losses):
            raise TrainingFailed(f"fold {i_fold}: training loss became {losses[-1] if losses else 'empty'}")
        epoch_val_accuracy, saved = fold_state.epoch_val_accuracy, fold_state.saved
        add_seconds(net, "training", time.perf_counter() - fit_started)
        if len(epoch_seconds) > 1:  # the first epoch's excess: the steps traced into graphs
            add_seconds(net, "tracing", max(0.0, epoch_seconds[0] - float(np.median(epoch_seconds[1:]))))
    net.fold_states[i_fold] = saved
    predict_started = time.perf_counter()
    val_probabilities = predict(model, X, val_indices)
    add_seconds(net, "predicting", time.perf_counter() - predict_started)
    if not np.all(np.isfinite(val_probabilities)):
        raise TrainingFailed(f"fold {i_fold}: the model predicts non-finite values")
    return compute_descriptors(Y[val_indices], val_probabilities), epoch_val_accuracy


def cross_validate(net, is_train, folds, fold_ids):
    """Fits net on each fold of fold_ids (is_train False: scores it untrained); keeps the best
    fold's weights, the mean validation metrics over the folds and the test metrics of the kept
    weights in net. Returns (mean validation accuracy, test metrics). Raises TrainingFailed."""
    start = time.perf_counter()
    fold_metrics, net.epoch_val_accuracy = [], []
    net.fold_states, net.fold_weights = {}, {}
    model = compiled_model(net)
    add_seconds(net, "building", time.perf_counter() - start)
    for i_fold in fold_ids:
        metrics, epoch_val_accuracy = fit_one_fold(net, model, is_train, folds, i_fold)
        fold_metrics.append(metrics)
        net.fold_weights[i_fold] = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
        net.epoch_val_accuracy.append(epoch_val_accuracy)
    for name, weights in net.fold_weights[fold_ids[best_fold(fold_metrics)]].items():
        model.get_layer(name).set_weights(weights)
    net.val_metrics = mean_over_folds(fold_metrics)
    net.val_score = net.val_metrics["accuracy"]
    predict_started = time.perf_counter()
    net.test_metrics = compute_descriptors(net.data.Y_test, predict(model, net.data.X_test))
    add_seconds(net, "predicting", time.perf_counter() - predict_started)
    store_weights(net, model)
    net.trained = bool(is_train)
    net.epochs_trained = sum(map(len, net.epoch_val_accuracy))  # a continued fold's earlier epochs included
    net.train_seconds = time.perf_counter() - start + (net.continue_from or {}).get("train_seconds", 0.0)
    del model
    gc.collect()
    return net.val_score, net.test_metrics


def add_seconds(net, phase, seconds):
    """Counts seconds of an evaluation's phase in net.phase_seconds (where a network's time goes)."""
    net.phase_seconds[phase] = net.phase_seconds.get(phase, 0.0) + seconds


def test_outputs(net):
    """The trained Keras model's outputs on net's test split."""
    model = keras_model(net, load_weights=True)
    try:
        return predict(model, net.data.X_test)
    finally:
        del model


def save_model(net, path):
    """Saves net's trained Keras model to path atomically (a temporary file, then a rename)."""
    model = keras_model(net, load_weights=True)
    temporary_path = path + ".partial.keras"
    model.save(temporary_path)
    os.replace(temporary_path, path)
    del model
