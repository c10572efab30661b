"""What an evaluated network is, as one frozen record (the way Optuna's FrozenTrial is): its
architecture and training settings, its scores, its measured figures, where its time went, and
(in its network file only) its trained weights and deployed flatbuffer.

It travels from the worker that evaluated it to the search (in a Result), into the run folder
(networks/<child_id>.pkl, as plain data: as_dict) and back (from_dict, which reads files of any
version: a field a file lacks takes its default). A step that changes one makes a new one
(dataclasses.replace).
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class NetworkState:
    """architecture: hwnas.network.net.Net.architecture(); train_settings: epochs, batch size,
    patience, learning rate, seed, verbose; val_metrics / test_metrics: compute_descriptors dicts
    (val_score: the validation accuracy); deployed: what the deployed model measured (flash,
    arena, its test metrics on TFLM); epochs_trained and train_seconds over every fold (and every
    rung of successive halving); epoch_val_accuracy: per fold, after each epoch; rung,
    stopped_early: successive halving's; phase_seconds: where the evaluation's seconds went; the
    weights: per block (layer_weights), the byte table's (input_weights), the classifier's
    (head_weights), every trained fold's (fold_weights: {fold: {layer: weights}}, what a child
    inherits); deployed_model_bytes: the flatbuffer."""
    architecture: dict = None
    deploy_precision: str = "int8"
    train_settings: dict = None
    val_score: float = None
    val_metrics: dict = None
    test_metrics: dict = None
    deployed: dict = None
    trained: bool = False
    train_seconds: float = None
    epochs_trained: int = None
    epoch_val_accuracy: list = None
    rung: int = None
    stopped_early: bool = False
    phase_seconds: dict = None
    inherited_from: tuple = ()
    layers_inherited: int = 0
    child_id: str = None
    mutation: str = None
    layer_weights: list = None
    input_weights: list = None
    head_weights: list = None
    fold_weights: dict = None
    deployed_model_bytes: bytes = None

    HEAVY = ("layer_weights", "input_weights", "head_weights", "fold_weights", "deployed_model_bytes")

    def light(self):
        """This state without its weights and deployed bytes: what the search keeps in memory and
        in its checkpoint for every network (the rest stays in its network file)."""
        return dataclasses.replace(self, **dict.fromkeys(self.HEAVY))

    def replaced(self, **changes):
        return dataclasses.replace(self, **changes)

    def as_dict(self):
        """Plain data, what a network file or a checkpoint holds: the fields that hold something."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if getattr(self, field.name) is not None}

    @classmethod
    def from_dict(cls, saved):
        """The state of a network file or checkpoint of any version (a NetworkState is taken as it is)."""
        if isinstance(saved, cls):
            return saved
        names = {field.name for field in dataclasses.fields(cls)}
        values = {name: value for name, value in saved.items() if name in names and value is not None}
        if "inherited_from" in values:
            values["inherited_from"] = tuple(values["inherited_from"])
        return cls(**values)
