"""The search's trials: every network it evaluates gets an id and a seed when it is proposed,
its result once it is evaluated (or the earlier result of its architecture: it is never
trained twice), and its record in children.csv and its network file, in id order.

The history (the architectures evaluated and a light copy of each one's first result) is kept
in memory for reuse and the Pareto front, and rebuilt from children.csv and the network files
when a run resumes.
"""
import json
from typing import NamedTuple

from hwnas.evaluation.evaluate import Result, Status, Task
from hwnas.network.net import Net, architecture_key
from hwnas.network.state import NetworkState
from hwnas.strategy.inheritance import inherited_weights


class Evaluated(NamedTuple):
    """An architecture's first evaluation in this run: its network's id, status, keras-flops count
    and light state (the weights stay in its network file)."""
    child_id: str
    status: Status
    flops_keras_flops: object
    state: NetworkState


REUSE_REASONS = {Status.FAILED: "{earlier} failed", Status.STOPPED: "{earlier} was stopped early by successive halving"}


class Trials:
    """The evaluated networks of one run. records: hwnas.run.records.RunRecords; data: the
    SessionData the networks are built on; seed: the search's seed (each network's seed comes from it)."""

    def __init__(self, records, data, seed):
        self.records, self.data, self.seed = records, data, seed
        self.n_evaluated = 0
        self.n_trained = 0  # evaluated minus reused
        self.keys = set()  # architecture keys of every evaluated network
        self.results = {}  # architecture key -> its first Evaluated

    def open(self, child, generation):
        """Gives child its id and training seed (from its number, so that the result does not
        depend on how many networks train at once). Returns its architecture key."""
        self.n_evaluated += 1
        child.child_id = f"g{generation:03d}_c{self.n_evaluated:04d}"
        child.train_settings["seed"] = self.seed * 100_003 + self.n_evaluated
        return child.architecture_key()

    def forget(self, n_networks, keys):
        """Takes back the last n_networks opened and never evaluated (their generation closed
        without them); keys: the architecture keys of every network that was evaluated."""
        self.n_evaluated -= n_networks
        self.keys = set(keys)

    def saved_before_resume(self, child):
        """The Result a session that ended inside this generation saved for child (same id,
        architecture and seed: a resume proposes the same children again), so a resumed
        generation does not train again what was finished. None when there is none, or when
        that network failed (it gets another try)."""
        if not self.records.has_network(child.child_id):
            return None
        saved = self.records.load_network(child.child_id)
        state = saved.state
        if (saved.status == Status.FAILED or state.train_settings != child.train_settings
                or architecture_key(state.architecture, self.data.input_shape) != child.architecture_key()):
            return None
        return saved

    def close(self, child, key, result):
        """Gives child its result (None: the earlier evaluation of its architecture's, reused),
        writes its network file when it was evaluated here. Returns (status, reason, keras-flops' count)."""
        if result is None:
            earlier = self.results[key]
            child.take_results(self.records.network_state(earlier.child_id))
            child.train_seconds, child.epochs_trained = 0.0, 0  # reused: it cost nothing
            reason = f"same architecture as {earlier.child_id}: its result, not trained again"
            if earlier.status in REUSE_REASONS:
                reason += f" ({REUSE_REASONS[earlier.status].format(earlier=earlier.child_id)})"
            if earlier.status == Status.FAILED:
                child.val_score = child.test_metrics = None
            return Status.REUSED, reason, earlier.flops_keras_flops
        if result.state is not None:
            child.take_results(result.state)
        if result.status == Status.FAILED:
            child.val_score = child.test_metrics = None
        self.n_trained += 1
        state = child.to_state()
        self.records.save_network(child.child_id, Result(state, result.status, result.reason, result.flops_keras_flops))
        self.results[key] = Evaluated(child.child_id, result.status, result.flops_keras_flops, state.light())
        return result.status, result.reason, result.flops_keras_flops

    def rebuild(self, rows):
        """The evaluated architectures and their results from the checkpoint's records of
        children.csv and the network files: what resume needs to reuse results as before."""
        for row in rows:
            key = architecture_key(json.loads(row["architecture"]), self.data.input_shape)
            self.keys.add(key)
            if row["status"] != Status.REUSED:
                result = self.records.load_network(row["child_id"])
                self.results[key] = Evaluated(row["child_id"], result.status, result.flops_keras_flops,
                                              result.state.light())

    def adopt_history(self, history):
        """The history a version 1 checkpoint held itself (every network's weights inside): its
        networks become network files, as version 2 keeps them."""
        self.keys = set(history["evaluated_keys"])
        for key, earlier in history["evaluated_results"].items():
            state, status = NetworkState.from_dict(earlier["state"]), Status(earlier["status"])
            self.records.save_network(earlier["child_id"], Result(state, status, "", earlier["flops_keras_flops"]))
            self.results[key] = Evaluated(earlier["child_id"], status, earlier["flops_keras_flops"], state.light())

    def network_with_weights(self, state):
        """The network of a (light) state, with the weights and deployed model of its
        architecture's evaluation (read from its network file)."""
        network = Net.from_state(state, None, self.data)
        earlier = self.results.get(network.architecture_key())
        if earlier is not None and earlier.status != Status.FAILED:
            network.take_results(self.records.network_state(earlier.child_id))
        return network

    def trained(self):
        """(child_id, network without weights) of every network trained to the full budget with scores."""
        for earlier in self.results.values():
            if earlier.status not in (Status.FAILED, Status.STOPPED):  # stopped: scores of fewer epochs
                yield earlier.child_id, Net.from_state(earlier.state, None, self.data)


def task_of(child, settings, parents):
    """child's evaluation Task under a search's settings; with inherit_weights, the weights its
    parents ({child_id: evaluated Net}) give it fold by fold, and its epochs cut to inherit_epochs
    (set on child too, as its network file will say)."""
    inherit = None
    if settings["inherit_weights"]:
        weights, givers, n_layers = inherited_weights(child, parents)
        if n_layers:
            inherit = {"from": givers, "weights": weights}
            epochs = settings["inherit_epochs"] or max(1, round(settings["epochs"] / 3))
            child.train_settings["epochs"] = min(child.train_settings["epochs"], epochs)
    return Task(child.architecture(), dict(child.train_settings), child.deploy_precision,
                settings["use_full_training"],
                settings["is_train"] if settings["use_full_training"] else settings["is_train_proxy"],
                settings["num_selected_folds"], inherit=inherit)
