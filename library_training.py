"""A network's Keras model and its training: the model built from the network's description,
fitted fold by fold, and the trained weights kept with the network (library_net.Net).

One compiled model serves every fold of an evaluation (tracing costs seconds, as much as a few
epochs of a small network); each fold starts from the weights a fresh model gets from the
fold's seed (the network's seed + the fold), or from where successive halving's previous rung
left it (library_training_state). The score is the mean validation accuracy over the folds; the
best fold's weights are kept, and the test split is only predicted with them, never used to choose.
"""
import gc
import math
import os
import time

import keras
import numpy as np

import library_load_and_split_data as data_lib
import library_training_state as training_state
from library_compute_stats import best_fold, compute_descriptors, mean_over_folds
from library_encoding import TABLE_LAYER_NAME
from library_head import CLASSIFIER

DEFAULT_TRAIN_SETTINGS = {"epochs": 20, "batch_size": 64, "patience": 5,
                          "learning_rate": 1e-3, "seed": 0, "verbose": 0}


class TrainingFailed(RuntimeError):
    """Training of a candidate diverged (NaN/inf loss) or raised; the search records it and goes on."""


def keras_model(net, load_weights=False):
    """The Keras model of net: a keras.Sequential that takes the data's samples (batch, length, 1)
    as they are; its first layers are the input stage's (library_encoding), then the blocks' and
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
            model.get_layer(TABLE_LAYER_NAME).set_weights(net.input_weights)
        for block in net.block_list:
            for name, weights in block.layer_weights.items():
                model.get_layer(name).set_weights(weights)
        model.get_layer(CLASSIFIER).set_weights(net.head_weights)
    return model


def store_weights(net, model):
    """Keeps model's trained weights with net's input stage, blocks and head, so the network can be rebuilt."""
    net.input_weights = (model.get_layer(TABLE_LAYER_NAME).get_weights()
                         if net.input_stage.encoding == "embedding" else None)
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
    x, y = net.data.X_train[:1], net.data.Y_train[:1]
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
    settings = net.train_settings
    X_train, X_val, Y_train, Y_val = data_lib.get_fold_split(net.data.X_train, net.data.Y_train, folds, i_fold)
    saved = (net.continue_from or {"folds": {}})["folds"].get(i_fold)
    if saved is None:
        start_fold(net, model, i_fold)
    else:
        training_state.restore(model, saved)
        keras.utils.set_random_seed(training_state.continuation_seed(settings["seed"] + i_fold, saved["epochs_done"]))
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
        history = model.fit(X_train, Y_train, validation_data=(X_val, Y_val),
                            initial_epoch=saved["epochs_done"] if saved else 0,
                            epochs=settings["epochs"], batch_size=settings["batch_size"],
                            callbacks=[keras.callbacks.TerminateOnNaN(), early_stopping, reduce_lr, fold_state],
                            verbose=settings["verbose"])
        losses = history.history.get("loss", [])
        if not losses or not all(math.isfinite(loss) for loss in losses):
            raise TrainingFailed(f"fold {i_fold}: training loss became {losses[-1] if losses else 'empty'}")
        epoch_val_accuracy, saved = fold_state.epoch_val_accuracy, fold_state.saved
    net.fold_states[i_fold] = saved
    val_probabilities = model.predict(X_val, batch_size=512, verbose=0)
    if not np.all(np.isfinite(val_probabilities)):
        raise TrainingFailed(f"fold {i_fold}: the model predicts non-finite values")
    return compute_descriptors(Y_val, val_probabilities), epoch_val_accuracy


def cross_validate(net, is_train, folds, fold_ids):
    """Fits net on each fold of fold_ids (is_train False: scores it untrained); keeps the best
    fold's weights, the mean validation metrics over the folds and the test metrics of the kept
    weights in net. Returns (mean validation accuracy, test metrics). Raises TrainingFailed."""
    start = time.perf_counter()
    fold_metrics, net.epoch_val_accuracy = [], []
    net.fold_states, net.fold_weights = {}, {}
    model = compiled_model(net)
    for i_fold in fold_ids:
        metrics, epoch_val_accuracy = fit_one_fold(net, model, is_train, folds, i_fold)
        fold_metrics.append(metrics)
        net.fold_weights[i_fold] = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
        net.epoch_val_accuracy.append(epoch_val_accuracy)
    for name, weights in net.fold_weights[fold_ids[best_fold(fold_metrics)]].items():
        model.get_layer(name).set_weights(weights)
    net.val_metrics = mean_over_folds(fold_metrics)
    net.val_score = net.val_metrics["accuracy"]
    net.test_metrics = compute_descriptors(net.data.Y_test, model.predict(net.data.X_test, batch_size=512, verbose=0))
    store_weights(net, model)
    net.trained = bool(is_train)
    net.epochs_trained = sum(map(len, net.epoch_val_accuracy))  # a continued fold's earlier epochs included
    net.train_seconds = time.perf_counter() - start + (net.continue_from or {}).get("train_seconds", 0.0)
    del model
    gc.collect()
    return net.val_score, net.test_metrics


def test_outputs(net):
    """The trained Keras model's outputs on net's test split."""
    model = keras_model(net, load_weights=True)
    try:
        return model.predict(net.data.X_test, batch_size=512, verbose=0)
    finally:
        del model


def save_model(net, path):
    """Saves net's trained Keras model to path atomically (a temporary file, then a rename)."""
    model = keras_model(net, load_weights=True)
    temporary_path = path + ".partial.keras"
    model.save(temporary_path)
    os.replace(temporary_path, path)
    del model
