"""A network: its description (input stage, blocks, head), its cost added up from theirs, and its
state (scores, measured figures, weights), with the specification's methods. Building and
training its Keras model is hwnas.network.training's; converting and measuring it hwnas.network.deploy's.
"""
import json
import time

import keras

from hwnas.common.log import write_line
from hwnas.data import idx as data_lib
from hwnas.network import deploy, training
from hwnas.network.block import Block
from hwnas.network.deployed_cost import DEPLOYED_COST, plan_chain_arena
from hwnas.network.figures import HardwareFigures
from hwnas.network.head import HEADS, Head
from hwnas.network.input_stage import InputStage
from hwnas.network.keras_flops import keras_flops_count
from hwnas.network.state import NetworkState
from hwnas.network.training import DEFAULT_TRAIN_SETTINGS, TrainingFailed  # noqa: F401  (the specification's names)


class Net:
    """A candidate network: its input stage, Conv1D blocks, a head, then Dense(num_classes, softmax).

    block_list: list of Block; each is placed on its predecessor's output (the
        first on the input stage's), so blocks built by hand need no input sizes.
        nas_saver_name: path of the NAS log file that log_message appends to
        (None: no log). preloaded_data: a SessionData or the original toolkit's
        4-tuple (X_train_val, y_train_val, X_test, y_test); None loads the demo
        data with fetch_data. head: 'gap' or 'flatten'.
    train_settings: epochs, batch_size, patience, learning_rate, seed, verbose.
    deploy_precision: 'int8' or 'float32', the precision flash and RAM are figured for.
    input_stage: what the network reads of each session (hwnas.network.input_stage.InputStage or its
        settings; None: every byte scaled to [0, 1], the original toolkit's input).
    """

    def __init__(self, block_list, nas_saver_name, preloaded_data=None, head="gap",
                 train_settings=None, head_weights=None, deploy_precision="int8", input_stage=None,
                 input_weights=None):
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if deploy_precision not in DEPLOYED_COST:
            raise ValueError(f"deploy_precision must be one of {tuple(DEPLOYED_COST)}, got {deploy_precision!r}")
        self.deploy_precision, self.nas_saver_name = deploy_precision, nas_saver_name
        self.head, self.head_weights = head, head_weights
        self.train_settings = dict(DEFAULT_TRAIN_SETTINGS, **(train_settings or {}))
        self.data = (data_lib.SessionData.from_preloaded(preloaded_data) if preloaded_data is not None
                     else self.fetch_data())
        self.input_stage = InputStage.from_settings(input_stage).placed(self.input_shape[0])
        self.input_weights = input_weights  # the byte table's trained weights (embedding), else None
        self.block_list = chain_blocks(block_list, self.input_stage.output_shape)
        self.val_score = self.val_metrics = self.test_metrics = self.train_seconds = None
        self.epochs_trained = None  # epochs run, summed over the folds (early stopping ends some sooner)
        self.epoch_val_accuracy = None  # per fold: the validation accuracy after each epoch
        self.continue_from = None  # a previous rung's training to continue: {"folds": {i_fold: state}, "train_seconds"}
        self.fold_states = {}  # i_fold -> where its training ended (hwnas.network.training_state), for the next rung
        self.fold_weights = {}  # i_fold -> {layer name: weights} as the fold's training left them
        self.inherit = None  # i_fold -> {layer name: weights} a parent's fold gives it (hwnas.strategy.inheritance)
        self.input_source = self.head_source = None  # child_ids its input stage and head come from (hwnas.strategy.inheritance)
        self.inherited_from, self.layers_inherited = (), 0
        self.rung = None  # successive halving: the last rung it trained at (hwnas.search.budget)
        self.phase_seconds = {}  # seconds of its evaluation by phase: building, tracing, training, predicting, ...
        self.callbacks, self.deadline = [], None  # its fits' own Keras callbacks; the time.monotonic() they stop by
        self.stopped_early = False  # successive halving stopped it below the full budget: not comparable
        self.trained = False
        self.deployed = self.deployed_model_bytes = None  # the deployed model's measured figures (measure_deployed), its flatbuffer
        self.child_id = None  # set by the search when the network is evaluated
        self.mutation = None  # the mutation that made it, for the log
        self.parent_ids = ()  # child_ids of the networks it was made from

    # ----- data ----------------------------------------------------------------
    def fetch_data(self, num_classes=None, test_size=0.1, encode_labels=False):
        """Loads the demo IDX data and returns a SessionData (labels one-hot).

        encode_labels is accepted for the specification's signature; a Net
        always trains on one-hot labels, so they are encoded either way.
        """
        X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(num_classes, test_size, encode_labels=False)
        num_classes = num_classes or int(max(y_train.max(), y_test.max())) + 1
        return data_lib.SessionData(X_train, data_lib.one_hot(y_train, num_classes),
                                    X_test, data_lib.one_hot(y_test, num_classes))

    @property
    def input_shape(self):
        return self.data.input_shape  # (length, channels) of the data's sessions

    @property
    def num_classes(self):
        return self.data.num_classes

    def device_input(self, X):
        """The data's samples X as the device model takes them (hwnas.network.input_stage)."""
        return self.input_stage.device_input(X)

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
        figures = self.figures()
        line = (f"depth {len(self.block_list)}: {self.architecture_text()}; params {figures.n_params}, "
                f"max tensor {figures.max_tens}, FLOPs {figures.flops}, flash {figures.flash_size} B, "
                f"RAM {figures.ram_size} B")
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
        write_line(self.nas_saver_name, message)

    def adjustments_text(self):
        """The adjustments a short input forced on the blocks, as one line ('' when none)."""
        return "; ".join(f"block {block.block_index}: {text}" for block in self.block_list
                         for text in block.adjustments)

    # ----- cost: the input stage's, the blocks' and the head's, added up ----------
    def weight_shapes(self):
        """{layer name: its weights' shapes} of every layer with weights, as Keras makes them."""
        shapes = dict(self.input_stage.weight_shapes(), **self.head_stage.weight_shapes())
        for block in self.block_list:
            shapes.update(block.weight_shapes())
        return shapes

    @property
    def head_stage(self):
        """The head (hwnas.network.head.Head) on the last block's output."""
        last = self.block_list[-1] if self.block_list else None
        shape = (last.output_size, last.output_channels) if last else self.input_stage.output_shape
        return Head(self.head, self.num_classes, shape)

    def figures(self):
        """The network's HardwareFigures (hwnas.network.figures) from its cost model: the input
        stage's, the blocks' and the head's added up, flash and the arena at deploy_precision
        (latency and energy: the target device's, hwnas.strategy.objectives.hardware_figures).
        No TensorFlow is called: see docs/hardware_figures.md for the agreement with the measured model."""
        stage, head, blocks = self.input_stage, self.head_stage, self.block_list
        return HardwareFigures(
            n_params=stage.n_params() + sum(block.n_params() for block in blocks) + head.n_params(),
            max_tens=max([*stage.tensor_sizes(), *(size for block in blocks for size in block.tensor_sizes())]),
            flops=stage.flops() + sum(block.flops() for block in blocks) + head.flops(),
            flash_size=self._deployed_flash_bytes(), ram_size=self.deployed_arena_bytes()["total"])

    def hw_measures(self):
        """[n_params, max_tens, flops, flash_size, ram_size]: the specification's list of figures() (which names them)."""
        figures = self.figures()
        return [figures.n_params, figures.max_tens, figures.flops, figures.flash_size, figures.ram_size]

    def cost_layers(self):
        """The deployed network as layers a target device profile prices (hwnas.devices):
        [{"name", "flops", "ops": [(TFLite operator, work)]}]: the input stage, each block,
        and the head, as the TFLite converter makes them (a test compares the operators with
        converted models). FLOPs as keras-flops counts them."""
        head = self.head_stage
        return ([{"name": "input", "flops": self.input_stage.flops(), "ops": self.input_stage.deployed_ops()}]
                + [{"name": f"block {block.block_index}", "flops": block.flops(), "ops": block.deployed_ops()}
                   for block in self.block_list]
                + [{"name": f"head ({self.head})", "flops": head.flops(), "ops": head.deployed_ops()}])

    def _deployed_flash_bytes(self):
        cost = DEPLOYED_COST[self.deploy_precision]
        blocks = sum(block.deployed_flash_bytes(self.deploy_precision) for block in self.block_list)
        return (cost["model_fixed"] + self.input_stage.deployed_flash_bytes(self.deploy_precision) + blocks
                + self.head_stage.deployed_flash_bytes(cost))

    def deployed_arena_bytes(self):
        """TFLM tensor arena of the deployed model, estimated: {'activations', 'persistent', 'total'} bytes.

        Activations: TFLM's greedy plan of the chain input -> (GATHER ->) RESHAPE -> the
        blocks' ops -> the head's -> FULLY_CONNECTED -> SOFTMAX, with the head's scratch buffers.
        """
        cost = DEPLOYED_COST[self.deploy_precision]
        head = self.head_stage
        head_tensors, _, _, head_scratch = head.deployed_tensors()
        # the input (and the byte table's rows), and their RESHAPE to 4-D for CONV_2D, then the blocks'
        tensor_bytes = self.input_stage.deployed_tensor_bytes(cost["activation_bytes"])
        for block in self.block_list:
            tensor_bytes += [n * cost["activation_bytes"] for n in block.deployed_tensor_sizes()]
        first_head_op = len(tensor_bytes) - 1  # op i writes tensor i + 1
        tensor_bytes += [n * cost["activation_bytes"] for n in head_tensors]
        activations = plan_chain_arena(
            tensor_bytes, {first_head_op + op: sizes for op, sizes in head_scratch.items()})
        persistent = (cost["persistent_fixed"] + head.deployed_persistent_bytes(cost)
                      + self.input_stage.deployed_persistent_bytes(self.deploy_precision)
                      + sum(block.deployed_persistent_bytes(self.deploy_precision) for block in self.block_list))
        return {"activations": activations, "persistent": persistent, "total": activations + persistent}

    # ----- Keras, training, deployment: hwnas.network.training's and hwnas.network.deploy's ------
    def ins_keras_model(self, load_weigths=False):
        """Builds the Keras model of the block list (hwnas.network.training.keras_model): it takes the
        data's samples as they are. load_weigths: with the trained weights (ValueError if none)."""
        return training.keras_model(self, load_weigths)

    def device_model(self, load_weigths=False):
        """The Keras model the device runs (hwnas.network.deploy.device_model): it takes what the
        device feeds, the first bytes scaled or, for a byte table, as they are."""
        return deploy.device_model(self.ins_keras_model(load_weigths=load_weigths))

    def keras_flops(self):
        """FLOPs of this network measured by keras-flops on its device model (the reference)."""
        started = time.perf_counter()
        model = self.device_model()
        try:
            return keras_flops_count(model)
        finally:  # (the model goes with this call; its graph with the session)
            keras.backend.clear_session()
            training.add_seconds(self, "keras_flops", time.perf_counter() - started)

    def cross_validate(self, is_train, folds, fold_ids):
        """Fits the network on each fold of fold_ids (hwnas.network.training.cross_validate)."""
        return training.cross_validate(self, is_train, folds, fold_ids)

    def train_routine(self, is_train, folds):
        """K-fold cross-validation on every fold.

        is_train=False evaluates the untrained network (a dry run).
        Returns (mean validation accuracy, test metrics dict). Raises TrainingFailed.
        """
        return self.cross_validate(is_train, folds, range(len(folds)))

    def proxy_train_routine(self, is_train_proxy, folds, num_selected_folds=2):
        """Like train_routine on the first num_selected_folds folds only (faster).

        The same folds for every candidate keep the comparison fair.
        """
        if not 1 <= num_selected_folds <= len(folds):
            raise ValueError(f"num_selected_folds must be in 1..{len(folds)}, got {num_selected_folds}")
        return self.cross_validate(is_train_proxy, folds, range(num_selected_folds))

    def export_tflite(self, precision=None, n_representative=200):
        """The network as a TFLite flatbuffer (bytes) at `precision` (hwnas.network.deploy.export_network)."""
        return deploy.export_network(self, precision or self.deploy_precision, n_representative)

    def measure_deployed(self, model_bytes=None):
        """Measures the deployed model (hwnas.network.deploy.measure_network); returns and keeps in
        self.deployed: flash_bytes, arena_bytes, arena_activations, arena_persistent, test_accuracy, test_f1."""
        started = time.perf_counter()
        self.deployed_model_bytes = model_bytes if model_bytes is not None else self.export_tflite()
        converted = time.perf_counter()
        training.add_seconds(self, "conversion", converted - started)
        self.deployed = deploy.measure_network(self, self.deployed_model_bytes)
        training.add_seconds(self, "tflm", time.perf_counter() - converted)
        return self.deployed

    def test_predictions(self):
        """The trained network's outputs on the test split: {"float": the Keras model's,
        "deployed": the deployed model's run by TFLM (None when it was not measured)}."""
        deployed = (deploy.tflm_predict(self.deployed_model_bytes, self.data.X_test)
                    if self.deployed_model_bytes is not None else None)
        return {"float": training.test_outputs(self), "deployed": deployed}

    def save_keras(self, path):
        """Saves the trained Keras model to `path` atomically (temporary file, then rename)."""
        training.save_model(self, path)

    def save_deployed(self, path_without_extension):
        """Writes the deployed flatbuffer (<path>.tflite) and its C header (<path>.h), measuring
        the model first if it was not measured. Returns the two paths."""
        if self.deployed_model_bytes is None:
            self.measure_deployed()
        return deploy.save_deployed(self.deployed_model_bytes, path_without_extension, self.deployed["arena_bytes"])

    # ----- state: what an evaluation gives, to keep and rebuild ----------------
    def to_state(self):
        """Everything needed to rebuild this evaluated network without retraining, as a NetworkState:
        the architecture, settings, scores, measured figures, weights and deployed bytes."""
        return NetworkState(
            architecture=self.architecture(), deploy_precision=self.deploy_precision, train_settings=self.train_settings,
            val_score=self.val_score, val_metrics=self.val_metrics, test_metrics=self.test_metrics,
            deployed=self.deployed, trained=self.trained, train_seconds=self.train_seconds,
            epochs_trained=self.epochs_trained, epoch_val_accuracy=self.epoch_val_accuracy, rung=self.rung,
            stopped_early=self.stopped_early, phase_seconds=self.phase_seconds, inherited_from=self.inherited_from,
            layers_inherited=self.layers_inherited, child_id=self.child_id, mutation=self.mutation,
            layer_weights=[block.layer_weights for block in self.block_list], input_weights=self.input_weights,
            head_weights=self.head_weights, fold_weights=self.fold_weights, deployed_model_bytes=self.deployed_model_bytes)

    @classmethod
    def from_state(cls, state, nas_saver_name, preloaded_data):
        """The network a NetworkState (or its plain data) describes, on preloaded_data, with its weights and scores."""
        state = NetworkState.from_dict(state)
        net = net_from_architecture(state.architecture, nas_saver_name, preloaded_data, state.train_settings,
                                    state.deploy_precision)
        net.take_results(state)
        net.child_id, net.mutation = state.child_id, state.mutation
        return net

    def take_results(self, state):
        """Takes the weights, scores and measured figures of an evaluation of this architecture (a NetworkState)."""
        state = NetworkState.from_dict(state)
        if architecture_key(state.architecture, self.input_shape) != self.architecture_key():
            raise ValueError("the results are of another architecture")
        for block, weights in zip(self.block_list, state.layer_weights or [None] * len(self.block_list)):
            block.layer_weights = weights
        for name in ("input_weights", "head_weights", "val_score", "val_metrics", "test_metrics", "train_seconds", "trained",
                     "deployed", "deployed_model_bytes", "epochs_trained", "epoch_val_accuracy", "rung", "stopped_early",
                     "inherited_from", "layers_inherited"):
            setattr(self, name, getattr(state, name))
        self.phase_seconds, self.fold_weights = dict(state.phase_seconds or {}), state.fold_weights or {}


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
