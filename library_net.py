"""A network: its blocks and head, the Keras model, training, hardware measures, export."""
import gc
import json
import math
import os
import re
import time

import keras
import numpy as np
import tensorflow as tf

import library_deploy as deploy
import library_load_and_split_data as data_lib
import library_encoding as encoding
from library_encoding import TABLE_LAYER_NAME, InputStage
import library_training_state as training_state
from library_block import DEPLOYED_COST, Block
from library_compute_stats import best_fold, compute_descriptors, mean_over_folds
from library_config import write_atomically

HEADS = ("gap", "flatten")  # GlobalAveragePooling1D (the specification's) or Flatten


# ----- keras-flops compatibility layer ------------------------------------------
# keras-flops 0.1.2 (2020) is the FLOPs reference the field uses, but on
# TensorFlow >= 2.13 / Keras 3 it breaks twice:
#  1. importing it registers profiler statistics for ops that TensorFlow now
#     registers itself ("AddV2"), and TensorFlow's registry raises KeyError
#     "Registering two statistical functions". We import it with duplicate
#     registrations skipped, so TensorFlow's own function stays and keras-flops
#     adds only what TensorFlow lacks (its inference FusedBatchNormV3 and Max).
#  2. its get_flops builds input specs as `[batch] + inp.shape[1:]`, which fails
#     on Keras 3's tuple shapes. keras_flops_count below does the same thing
#     it does (freeze the inference graph, ask TensorFlow's v1 profiler for
#     float operations) with tuple shapes.
_keras_flops_module = None


def _import_keras_flops():
    global _keras_flops_module
    if _keras_flops_module is not None:
        return _keras_flops_module
    from tensorflow.python.framework import ops as tf_ops

    register_original = tf_ops.RegisterStatistics.__call__

    def register_unless_present(decorator, function):
        key = f"{decorator._op_type},{decorator._statistic_type}"
        if key in tf_ops._stats_registry.list():
            return function
        return register_original(decorator, function)

    tf_ops.RegisterStatistics.__call__ = register_unless_present
    try:
        import keras_flops
    finally:
        tf_ops.RegisterStatistics.__call__ = register_original
    _keras_flops_module = keras_flops
    return keras_flops


def keras_flops_count(model, batch_size=1):
    """FLOPs of one inference of `model` (Keras 3), counted by keras-flops' registry.

    Raises RuntimeError if the profiler finds no float operation: a failure to
    measure must never pass a threshold as zero.
    """
    _import_keras_flops()
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2_as_graph)
    input_spec = tf.TensorSpec((batch_size,) + tuple(model.inputs[0].shape[1:]), model.inputs[0].dtype)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(input_spec)
    frozen, _ = convert_variables_to_constants_v2_as_graph(concrete)
    options = (tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build())
    # TensorFlow's v1 profiler warns of its own deprecation on every call.
    logger_level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")
    try:
        profile = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(),
                                                cmd="scope", options=options)
    finally:
        tf.get_logger().setLevel(logger_level)
    if profile is None or profile.total_float_ops <= 0:
        raise RuntimeError(f"keras-flops found no float operations in model {model.name}")
    return int(profile.total_float_ops)


class TrainingFailed(RuntimeError):
    """Training of a candidate diverged (NaN/inf loss) or raised; the search records it and goes on."""


DEFAULT_TRAIN_SETTINGS = {"epochs": 20, "batch_size": 64, "patience": 5,
                          "learning_rate": 1e-3, "seed": 0, "verbose": 0}


class Net:
    """A candidate network: its input stage, Conv1D blocks, a head, then Dense(num_classes, softmax).

    block_list: list of Block; each is placed on its predecessor's output (the
        first on the data's input), so blocks built by hand need no input sizes.
        nas_saver_name: path of the NAS log file that log_message appends to
        (None: no log). preloaded_data: a SessionData or the original toolkit's
        4-tuple (X_train_val, y_train_val, X_test, y_test); None loads the demo
        data with fetch_data. head: 'gap' or 'flatten'.
    train_settings: epochs, batch_size, patience, learning_rate, seed, verbose.
    deploy_precision: 'int8' or 'float32', the precision flash and RAM are figured for.
    input_stage: what the network reads of each session (library_encoding.InputStage or its
        settings; None: every byte scaled to [0, 1], the original toolkit's input).
    """

    def __init__(self, block_list, nas_saver_name, preloaded_data=None, head="gap",
                 train_settings=None, head_weights=None, deploy_precision="int8", input_stage=None,
                 input_weights=None):
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if deploy_precision not in DEPLOYED_COST:
            raise ValueError(f"deploy_precision must be one of {tuple(DEPLOYED_COST)}, got {deploy_precision!r}")
        self.deploy_precision = deploy_precision
        self.nas_saver_name = nas_saver_name
        self.head = head
        self.head_weights = head_weights
        self.train_settings = dict(DEFAULT_TRAIN_SETTINGS, **(train_settings or {}))
        self.data = (data_lib.SessionData.from_preloaded(preloaded_data) if preloaded_data is not None
                     else self.fetch_data())
        self.input_stage = InputStage.from_settings(input_stage).placed(self.input_shape[0])
        self.input_weights = input_weights  # the byte table's trained weights (embedding), else None
        self.block_list = chain_blocks(block_list, self.input_stage.output_shape)
        self.val_score = None
        self.val_metrics = None
        self.test_metrics = None
        self.train_seconds = None
        self.epochs_trained = None  # epochs run, summed over the folds (early stopping ends some sooner)
        self.epoch_val_accuracy = None  # per fold: the validation accuracy after each epoch
        self.continue_from = None  # a previous rung's training to continue: {"folds": {i_fold: state}, "train_seconds"}
        self.fold_states = {}  # i_fold -> where its training ended (library_training_state), for the next rung
        self.rung = None  # successive halving: the last rung it trained at (library_halving)
        self.stopped_early = False  # successive halving stopped it below the full budget: not comparable
        self.trained = False
        self.deployed = None  # measured figures of the deployed model (measure_deployed)
        self.deployed_model_bytes = None  # its flatbuffer
        self.child_id = None  # set by the search when the network is evaluated
        self.mutation = None  # the mutation that made it, for the log
        self.parent_ids = ()  # child_ids of the networks it was made from

    # ----- data ----------------------------------------------------------------
    def fetch_data(self, num_classes=None, test_size=0.1, encode_labels=False):
        """Loads the demo IDX data and returns a SessionData (labels one-hot).

        encode_labels is accepted for the specification's signature; a Net
        always trains on one-hot labels, so they are encoded either way.
        """
        X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(
            num_classes, test_size, encode_labels=False)
        num_classes = num_classes or int(max(y_train.max(), y_test.max())) + 1
        return data_lib.SessionData(X_train, data_lib.one_hot(y_train, num_classes),
                                    X_test, data_lib.one_hot(y_test, num_classes))

    @property
    def input_shape(self):
        return self.data.input_shape  # (length, channels) of the data's sessions

    def device_input(self, X):
        """The data's samples X as the device model takes them (library_encoding)."""
        return self.input_stage.device_input(X)

    @property
    def num_classes(self):
        return self.data.num_classes

    # ----- description ---------------------------------------------------------
    def architecture(self):
        """The architecture as plain data: input stage, head and block settings (what a record stores)."""
        return {"input": self.input_stage.settings(), "head": self.head,
                "blocks": [block.settings() for block in self.block_list]}

    def architecture_key(self):
        """Canonical text of the network as built: equal keys mean the same network.

        Made of the built settings (after the adjustments a short input forces),
        without those that do not shape the network (the pool size of a block
        without pooling), so two block lists that build the same model share a key.
        """
        return _key_of_built(self.input_stage, self.head, [block.built_settings() for block in self.block_list])

    def architecture_text(self):
        return " | ".join([self.input_stage.short_name(), *(block.short_name() for block in self.block_list),
                           f"head:{self.head}"])

    def short_description(self):
        """Logs and returns one line: depth, architecture and hardware figures."""
        n_params, max_tens, flops, flash_size, ram_size = self.hw_measures()
        line = (f"depth {len(self.block_list)}: {self.architecture_text()}; params {n_params}, "
                f"max tensor {max_tens}, FLOPs {flops}, flash {flash_size} B, RAM {ram_size} B")
        self.log_message(line)
        return line

    def dump(self):
        """Logs the input stage and every block's configuration and cost."""
        self.log_message(f"input: {self.input_stage.describe()}")
        for block in self.block_list:
            self.log_message(f"block {block.block_index}: {block.describe()}")
        self.log_message(f"head: {self.head} -> Dense({self.num_classes}, softmax)")

    def log_message(self, message):
        """Appends a line to the NAS log file (nas_saver_name)."""
        if self.nas_saver_name is None:
            return
        with open(self.nas_saver_name, "a") as log_file:
            log_file.write(message + "\n")

    # ----- head cost (the network owns its head) ----------------------------
    def _head_features(self):
        last_length, last_channels = self._last_output_shape()
        return last_channels if self.head == "gap" else last_length * last_channels

    def _last_output_shape(self):
        if not self.block_list:
            return self.input_stage.output_shape
        last = self.block_list[-1]
        return last.output_size, last.output_channels

    def _head_n_params(self):
        return self._head_features() * self.num_classes + self.num_classes

    def _head_flops(self):
        last_length, last_channels = self._last_output_shape()
        pooling = last_length * last_channels if self.head == "gap" else 0  # Mean reduction
        # Dense: MatMul 2 per weight, BiasAdd 1 and Softmax 5 per class (TensorFlow's registry).
        return pooling + 2 * self._head_features() * self.num_classes + 6 * self.num_classes

    def cost_layers(self):
        """The deployed network as layers a target device profile prices (library_device):
        [{"name", "flops", "ops": [(TFLite operator, work)]}]: the input's reshape, each
        block, and the head (its reduction or flatten, FULLY_CONNECTED by multiply-
        accumulates, SOFTMAX by classes), as the TFLite converter makes them (a test
        compares the operators with converted models). FLOPs as keras-flops counts them."""
        last_length, last_channels = self._last_output_shape()
        if self.head == "gap":  # back to (length, channels), then the mean over the length
            features = [("RESHAPE", last_length * last_channels), ("MEAN", last_length * last_channels)]
        else:  # flattened, unless the length is 1 (the fully connected layer then reads it as it is)
            features = [("RESHAPE", last_length * last_channels)] if last_length > 1 else []
        head_ops = [*features, ("FULLY_CONNECTED", self._head_features() * self.num_classes),
                    ("SOFTMAX", self.num_classes)]
        return ([{"name": "input", "flops": self.input_stage.flops(), "ops": self.input_stage.deployed_ops()}]
                + [{"name": f"block {block.block_index}", "flops": block.flops(), "ops": block.deployed_ops()}
                   for block in self.block_list]
                + [{"name": f"head ({self.head})", "flops": self._head_flops(), "ops": head_ops}])

    # ----- hardware measures -----------------------------------------------
    def hw_measures(self):
        """[n_params, max_tens, flops, flash_size, ram_size] of the network, analytic.

        n_params as Keras counts; max_tens: largest activation tensor of the
        Keras model in elements (the input included); flops as keras-flops
        counts; flash_size: bytes of the TFLite flatbuffer at deploy_precision;
        ram_size: bytes of TFLM's tensor arena for it (planned activations plus
        persistent). No TensorFlow is called: see README, "What the hardware
        numbers mean", for the agreement with the measured model.
        """
        stage = self.input_stage
        n_params = stage.n_params() + sum(block.n_params() for block in self.block_list) + self._head_n_params()
        tensor_sizes = list(stage.tensor_sizes())
        for block in self.block_list:
            tensor_sizes.extend(block.tensor_sizes())
        max_tens = max(tensor_sizes)
        flops = stage.flops() + sum(block.flops() for block in self.block_list) + self._head_flops()
        flash_size, ram_size = self._deployed_flash_bytes(), self.deployed_arena_bytes()["total"]
        return [n_params, max_tens, flops, flash_size, ram_size]

    def _deployed_head(self):
        """The head's TFLite activation tensors (elements, in op order), its cost entries and
        the scratch bytes its ops ask TFLM for ({index of the op among the head's: [bytes]})."""
        last_length, last_channels = self._last_output_shape()
        if self.head == "gap":  # RESHAPE to 3-D, then MEAN over the length
            # TFLM's MEAN asks for three scratch buffers in its Prepare: an int32 sum per
            # output element, an int per input dimension (3) and per reduced axis (1).
            # They raise the arena only on tiny networks, whose tensors leave no gap for them.
            return ([last_length * last_channels, last_channels], "gap_ops", "persistent_gap",
                    {1: [4 * last_channels, 4 * 3, 4 * 1]})
        if last_length > 1:  # RESHAPE to (1, features); a length-1 output needs none
            return [last_length * last_channels], "flatten_op", "persistent_flatten", {}
        return [], None, None, {}

    def _deployed_flash_bytes(self):
        cost = DEPLOYED_COST[self.deploy_precision]
        _, head_entry, _, _ = self._deployed_head()
        head = (self._head_features() * self.num_classes * cost["weight_bytes"]
                + cost["per_class"] * self.num_classes + (cost[head_entry] if head_entry else 0))
        blocks = sum(block.deployed_flash_bytes(self.deploy_precision) for block in self.block_list)
        return cost["model_fixed"] + self.input_stage.deployed_flash_bytes(cost) + blocks + head

    def deployed_arena_bytes(self):
        """TFLM tensor arena of the deployed model, estimated: {'activations', 'persistent', 'total'} bytes.

        Activations: TFLM's greedy plan of the chain input -> (GATHER ->) RESHAPE -> the
        blocks' ops -> head -> FULLY_CONNECTED -> SOFTMAX.
        """
        cost = DEPLOYED_COST[self.deploy_precision]
        head_tensors, _, head_entry, head_scratch = self._deployed_head()
        # the input (and the byte table's rows), and their RESHAPE to 4-D for CONV_2D, then the blocks'
        tensor_bytes = self.input_stage.deployed_tensor_bytes(cost["activation_bytes"])
        for block in self.block_list:
            tensor_bytes += [n * cost["activation_bytes"] for n in block.deployed_tensor_sizes()]
        first_head_op = len(tensor_bytes) - 1  # op i writes tensor i + 1
        tensor_bytes += [n * cost["activation_bytes"] for n in head_tensors + [self.num_classes, self.num_classes]]
        activations = deploy.plan_chain_arena(
            tensor_bytes, {first_head_op + op: sizes for op, sizes in head_scratch.items()})
        persistent = (cost["persistent_fixed"] + cost["persistent_per_class"] * self.num_classes
                      + (cost[head_entry] if head_entry else 0) + self.input_stage.deployed_persistent_bytes(cost)
                      + sum(block.deployed_persistent_bytes(self.deploy_precision) for block in self.block_list))
        return {"activations": activations, "persistent": persistent, "total": activations + persistent}

    # ----- Keras -----------------------------------------------------------
    def head_layers(self):
        pooling = (keras.layers.GlobalAveragePooling1D(name="head_gap") if self.head == "gap"
                   else keras.layers.Flatten(name="head_flatten"))
        return [pooling, keras.layers.Dense(self.num_classes, activation="softmax", name="classifier")]

    def ins_keras_model(self, load_weigths=False):
        """Builds the Keras model of the block list.

        load_weigths: set the byte table's, each block's and the head's trained
        weights (saved by training); raises ValueError if the network has none.
        Returns a keras.Sequential that takes the data's samples (batch, length, 1) as
        they are: its first layers are the input stage's (library_encoding).
        """
        layers = [keras.Input(shape=self.input_shape), *self.input_stage.keras_layers(self.input_shape[0])]
        for block in self.block_list:
            layers.extend(block.create_layer())
        layers.extend(self.head_layers())
        model = keras.Sequential(layers, name="nas_net")
        if load_weigths:
            if not self.trained:
                raise ValueError("ins_keras_model(load_weigths=True) on a network that was never trained")
            if self.input_weights is not None:
                model.get_layer(TABLE_LAYER_NAME).set_weights(self.input_weights)
            for block in self.block_list:
                for name, weights in block.layer_weights.items():
                    model.get_layer(name).set_weights(weights)
            model.get_layer("classifier").set_weights(self.head_weights)
        return model

    def _store_weights(self, model):
        """Keeps the trained weights with their blocks, so the network can be rebuilt."""
        self.input_weights = (model.get_layer(TABLE_LAYER_NAME).get_weights()
                              if self.input_stage.encoding == "embedding" else None)
        for block in self.block_list:
            block.layer_weights = {
                name: model.get_layer(name).get_weights()
                for name in block.layer_names().values()
                if name in [layer.name for layer in model.layers] and model.get_layer(name).weights}
        self.head_weights = model.get_layer("classifier").get_weights()

    def device_model(self, load_weigths=False):
        """The Keras model the device runs (library_encoding.device_model): it takes what the
        device feeds, the first bytes scaled or, for a byte table, as they are."""
        return encoding.device_model(self.ins_keras_model(load_weigths=load_weigths))

    def keras_flops(self):
        """FLOPs of this network measured by keras-flops on its device model (the reference)."""
        model = self.device_model()
        try:
            return keras_flops_count(model)
        finally:
            del model
            keras.backend.clear_session()

    # ----- training --------------------------------------------------------
    def _compiled_model(self):
        """A Keras model of the network compiled for training. One serves every fold of an
        evaluation: tracing its train, test and predict functions costs seconds, as much as
        a few epochs of a small network, so it is paid once per network, not once per fold."""
        model = self.ins_keras_model()
        model.compile(optimizer=keras.optimizers.Adam(self.train_settings["learning_rate"]),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        # Keras (TensorFlow backend, no distribution strategy) creates the optimizer's and the
        # metrics' variables inside the first traced train step, and a tf.function that creates
        # variables is traced a second time: building them here, eagerly on one session, saves
        # that second trace (1-2 s per network, README "Training one network: where the time goes").
        model.optimizer.build(model.trainable_variables)
        x, y = self.data.X_train[:1], self.data.Y_train[:1]
        predicted = model(x)
        model.compute_loss(x, y, predicted)
        model.compute_metrics(x, y, predicted, sample_weight=None)
        model.reset_metrics()
        return model

    def _start_fold(self, model, i_fold):
        """Gives model the initial weights a fresh model gets for fold i_fold (its seed is
        the network's seed + i_fold) and a fresh optimizer: the fold trains as if on a new model."""
        keras.utils.set_random_seed(self.train_settings["seed"] + i_fold)
        fresh = self.ins_keras_model()
        for layer, fresh_layer in zip(model.layers, fresh.layers):
            for variable, fresh_variable in zip(layer.variables, fresh_layer.variables):
                variable.assign(fresh_variable)  # weights, BatchNorm statistics, dropout's seed state
        for variable in model.optimizer.variables:  # step count and Adam's moments (built by _compiled_model)
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
        model.optimizer.learning_rate = self.train_settings["learning_rate"]  # ReduceLROnPlateau lowers it
        del fresh

    def _fit_one_fold(self, model, is_train, folds, i_fold):
        """Fits model on fold i_fold from the fold's initial weights, or from where a previous
        rung left it (self.continue_from); returns (val metrics, validation accuracy after each epoch)."""
        settings = self.train_settings
        X_train, X_val, Y_train, Y_val = data_lib.get_fold_split(
            self.data.X_train, self.data.Y_train, folds, i_fold)
        saved = (self.continue_from or {"folds": {}})["folds"].get(i_fold)
        if saved is None:
            self._start_fold(model, i_fold)
        else:
            training_state.restore(model, saved)
            keras.utils.set_random_seed(training_state.continuation_seed(settings["seed"] + i_fold,
                                                                         saved["epochs_done"]))
        epoch_val_accuracy = list(saved["epoch_val_accuracy"]) if saved else []
        if is_train and not (saved and saved["finished"]):
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
        self.fold_states[i_fold] = saved
        val_probabilities = model.predict(X_val, batch_size=512, verbose=0)
        if not np.all(np.isfinite(val_probabilities)):
            raise TrainingFailed(f"fold {i_fold}: the model predicts non-finite values")
        return compute_descriptors(Y_val, val_probabilities), epoch_val_accuracy

    def _cross_validate(self, is_train, folds, fold_ids):
        """Fits the network on each fold in fold_ids; keeps the weights of the best fold.

        The score is the mean validation accuracy over the folds; the test split
        is only predicted (with the kept weights) for reporting, never for choosing.
        """
        start = time.perf_counter()
        fold_metrics, fold_weights, self.epoch_val_accuracy = [], [], []
        self.fold_states = {}
        model = self._compiled_model()
        for i_fold in fold_ids:
            metrics, epoch_val_accuracy = self._fit_one_fold(model, is_train, folds, i_fold)
            fold_metrics.append(metrics)
            fold_weights.append(model.get_weights())
            self.epoch_val_accuracy.append(epoch_val_accuracy)
        model.set_weights(fold_weights[best_fold(fold_metrics)])
        self.val_metrics = mean_over_folds(fold_metrics)
        self.val_score = self.val_metrics["accuracy"]
        self.test_metrics = compute_descriptors(
            self.data.Y_test, model.predict(self.data.X_test, batch_size=512, verbose=0))
        self._store_weights(model)
        self.trained = bool(is_train)
        self.epochs_trained = sum(map(len, self.epoch_val_accuracy))  # a continued fold's earlier epochs included
        self.train_seconds = time.perf_counter() - start + (self.continue_from or {}).get("train_seconds", 0.0)
        del model
        gc.collect()
        return self.val_score, self.test_metrics

    def train_routine(self, is_train, folds):
        """K-fold cross-validation on every fold.

        is_train=False evaluates the untrained network (a dry run).
        Returns (mean validation accuracy, test metrics dict). Raises TrainingFailed.
        """
        return self._cross_validate(is_train, folds, range(len(folds)))

    def proxy_train_routine(self, is_train_proxy, folds, num_selected_folds=2):
        """Like train_routine on the first num_selected_folds folds only (faster).

        The same folds for every candidate keep the comparison fair.
        """
        if not 1 <= num_selected_folds <= len(folds):
            raise ValueError(f"num_selected_folds must be in 1..{len(folds)}, got {num_selected_folds}")
        return self._cross_validate(is_train_proxy, folds, range(num_selected_folds))

    # ----- deployment ------------------------------------------------------
    def export_tflite(self, precision=None, n_representative=200):
        """The network as a TFLite flatbuffer (bytes) at `precision` (default: deploy_precision).

        Uses the trained weights when there are some. int8 calibration draws
        n_representative samples of the training split (seeded), never the test split.
        """
        model = self.device_model(load_weigths=self.trained)
        sample_rng = np.random.default_rng(self.train_settings["seed"])
        n_samples = min(n_representative, len(self.data.X_train))
        representative = self.device_input(
            self.data.X_train[sample_rng.choice(len(self.data.X_train), n_samples, replace=False)])
        try:
            return deploy.convert_to_tflite(model, representative, precision or self.deploy_precision)
        finally:
            del model

    def measure_deployed(self, model_bytes=None):
        """Measures the deployed model: flash (flatbuffer bytes), TFLM's arena and its test metrics.

        model_bytes: a flatbuffer from export_tflite (made here when None).
        Returns and keeps in self.deployed a dict: flash_bytes, arena_bytes,
        arena_activations, arena_persistent, test_accuracy, test_f1 (the model
        run by TFLM's interpreter on the test split, as a device runs it).
        """
        if model_bytes is None:
            model_bytes = self.export_tflite()
        self.deployed_model_bytes = model_bytes
        arena = deploy.tflm_arena(model_bytes)
        metrics = compute_descriptors(self.data.Y_test,
                                      deploy.tflm_predict(model_bytes, self.data.X_test))
        self.deployed = {"precision": self.deploy_precision, "flash_bytes": len(model_bytes),
                         "arena_bytes": arena["total"], "arena_activations": arena["activations"],
                         "arena_persistent": arena["persistent"], "test_accuracy": metrics["accuracy"],
                         "test_f1": metrics["f1"]}
        return self.deployed

    def test_predictions(self):
        """The trained network's outputs on the test split: {"float": the Keras model's,
        "deployed": the deployed model's run by TFLM (None when it was not measured)}."""
        model = self.ins_keras_model(load_weigths=True)
        try:
            outputs = model.predict(self.data.X_test, batch_size=512, verbose=0)
        finally:
            del model
        deployed = (deploy.tflm_predict(self.deployed_model_bytes, self.data.X_test)
                    if self.deployed_model_bytes is not None else None)
        return {"float": outputs, "deployed": deployed}

    # ----- export ----------------------------------------------------------
    def save_keras(self, path):
        """Saves the trained Keras model to `path` atomically (temporary file, then rename)."""
        model = self.ins_keras_model(load_weigths=True)
        temporary_path = path + ".partial.keras"
        model.save(temporary_path)
        os.replace(temporary_path, path)
        del model

    def save_deployed(self, path_without_extension):
        """Writes the deployed flatbuffer (<path>.tflite) and its C header (<path>.h).

        Returns the two paths. Measures the model first if it was not measured.
        """
        if self.deployed_model_bytes is None:
            self.measure_deployed()
        tflite_path, header_path = path_without_extension + ".tflite", path_without_extension + ".h"
        write_atomically(tflite_path, self.deployed_model_bytes)
        deploy.write_c_header(self.deployed_model_bytes, header_path,
                              array_name=re.sub(r"\W", "_", os.path.basename(path_without_extension)),
                              arena_bytes=self.deployed["arena_bytes"])
        return tflite_path, header_path

    def to_state(self):
        """Everything needed to rebuild this evaluated network without retraining: the
        architecture, settings, scores, measured figures, weights and deployed bytes."""
        return {"architecture": self.architecture(), "deploy_precision": self.deploy_precision,
                "train_settings": self.train_settings,
                "layer_weights": [block.layer_weights for block in self.block_list],
                "input_weights": self.input_weights, "head_weights": self.head_weights, "val_score": self.val_score, "val_metrics": self.val_metrics,
                "test_metrics": self.test_metrics, "train_seconds": self.train_seconds, "trained": self.trained,
                "epochs_trained": self.epochs_trained, "epoch_val_accuracy": self.epoch_val_accuracy,
                "rung": self.rung, "stopped_early": self.stopped_early,
                "deployed": self.deployed, "deployed_model_bytes": self.deployed_model_bytes,
                "child_id": self.child_id, "mutation": self.mutation}

    @classmethod
    def from_state(cls, state, nas_saver_name, preloaded_data):
        """The network to_state() described, on preloaded_data, with its weights and scores."""
        net = net_from_architecture(state["architecture"], nas_saver_name, preloaded_data,
                                    state["train_settings"], state["deploy_precision"])
        net.take_results(state)
        net.child_id, net.mutation = state["child_id"], state["mutation"]
        return net

    def take_results(self, state):
        """Takes the weights, scores and measured figures of an evaluation of this architecture."""
        if architecture_key(state["architecture"], self.input_shape) != self.architecture_key():
            raise ValueError("the results are of another architecture")
        for block, weights in zip(self.block_list, state.get("layer_weights") or [None] * len(self.block_list)):
            block.layer_weights = weights
        for name in ("input_weights", "head_weights", "val_score", "val_metrics", "test_metrics", "train_seconds", "trained",
                     "deployed", "deployed_model_bytes", "epochs_trained", "epoch_val_accuracy", "rung"):
            setattr(self, name, state.get(name))
        self.stopped_early = bool(state.get("stopped_early"))

    def adjustments_text(self):
        """The adjustments a short input forced on the blocks, as one line ('' when none)."""
        return "; ".join(f"block {block.block_index}: {text}" for block in self.block_list
                         for text in block.adjustments)

    def to_record(self):
        """Architecture, figures and scores as plain data (JSON-ready)."""
        n_params, max_tens, flops, flash_size, ram_size = self.hw_measures()
        return {"architecture": self.architecture(), "n_params": n_params, "max_tens": max_tens,
                "flops": flops, "flash_size": flash_size, "ram_size": ram_size,
                "deploy_precision": self.deploy_precision, "val_metrics": self.val_metrics,
                "test_metrics": self.test_metrics, "deployed_measured": self.deployed,
                "trained": self.trained, "adjustments": self.adjustments_text()}


def evaluate_network(task, data, folds):
    """Evaluates one network: a pure function of the architecture, the data and the settings.

    task: {"architecture", "train_settings", "deploy_precision", "use_full_training",
    "is_train", "num_selected_folds"} and optionally "measure" (default True),
    "continue_from" (a previous evaluation's "training_state": train on from there up to
    train_settings' epochs), "keep_training_state" (return where training ended) and
    "only_fold" (train, score and measure with that fold alone: library_fold_tasks).
    Trains (or dry-runs) the network on the folds; with measure, counts its FLOPs
    with keras-flops and measures its deployed model.
    Returns {"state": Net.to_state(), "status": ok / dry_run / failed,
    "reason", "flops_keras_flops", "training_state"}; an error is a failed status, never an exception.
    """
    net = net_from_architecture(task["architecture"], None, data, task["train_settings"],
                                task["deploy_precision"])
    net.continue_from = task.get("continue_from")
    status, reason, flops_keras_flops = "ok", "", None
    try:
        if task.get("only_fold") is not None:  # one fold of a network trained apart (library_fold_tasks)
            net._cross_validate(task["is_train"], folds, [task["only_fold"]])
        elif task["use_full_training"]:
            net.train_routine(task["is_train"], folds)
        else:
            net.proxy_train_routine(task["is_train"], folds, task["num_selected_folds"])
        if not net.trained:
            status = "dry_run"
        if task.get("measure", True):  # successive halving's lower rungs only need the scores
            flops_keras_flops = net.keras_flops()
            net.measure_deployed()
    except Exception as error:  # one bad candidate must not end a long search
        status, reason = "failed", f"{type(error).__name__}: {error}"
        net.val_score = net.test_metrics = None
    training = ({"folds": net.fold_states, "train_seconds": net.train_seconds}
                if task.get("keep_training_state") and status == "ok" else None)
    return {"state": net.to_state(), "status": status, "reason": reason, "flops_keras_flops": flops_keras_flops,
            "training_state": training}


def architecture_key(architecture, input_shape):
    """Canonical text of a plain-data architecture (Net.architecture()) on data whose
    sessions have input_shape (length, channels): equal keys mean the same network.
    An architecture without "input" (recorded before the input was searched) reads every byte scaled."""
    stage = InputStage.from_settings(architecture.get("input")).placed(input_shape[0])
    blocks = blocks_from_settings(architecture["blocks"], stage.output_shape)
    return _key_of_built(stage, architecture["head"], [block.built_settings() for block in blocks])


def _key_of_built(input_stage, head, built_settings):
    blocks = [{name: value for name, value in settings.items()
               if not (name == "pool_size" and settings["pooling"] == "none")}
              for settings in built_settings]
    return json.dumps({"input": input_stage.settings(), "head": head, "blocks": blocks},
                      sort_keys=True, separators=(",", ":"))


def chain_blocks(blocks, input_shape):
    """Copies of blocks, each placed on its predecessor's output (the first on an input of
    input_shape (length, channels)), indices in order; weights and settings kept."""
    chained = []
    length, channels = input_shape
    for block_index, block in enumerate(blocks):
        block = block.copy(input_size=length, input_channels=channels, block_index=block_index)
        chained.append(block)
        length, channels = block.output_size, block.output_channels
    return chained


def blocks_from_settings(block_settings, input_shape):
    """Blocks chained on an input of input_shape (length, channels) from a list of settings dicts."""
    return chain_blocks([Block(**settings) for settings in block_settings], input_shape)


def net_from_architecture(architecture, nas_saver_name, preloaded_data, train_settings=None,
                          deploy_precision="int8"):
    """A Net from the plain-data architecture of Net.architecture() (records, models/*.json)."""
    if isinstance(architecture, str):
        architecture = json.loads(architecture)
    blocks = [Block(**settings) for settings in architecture["blocks"]]  # Net places them on the input
    return Net(blocks, nas_saver_name, preloaded_data, head=architecture["head"],
               train_settings=train_settings, deploy_precision=deploy_precision,
               input_stage=architecture.get("input"))
