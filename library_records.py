"""The run's records on disk: children.csv, each evaluated network's artefacts, the checkpoint.

children.csv is the history of the search, one CSV record per evaluated network,
appended as each one finishes. A record may span several lines (a failure's
reason can be a multi-line error), so the file is only ever read and cut by CSV
records, never by lines.

Each trained (or failed) network's evaluation result (scores, measured figures,
trained weights, deployed flatbuffer) is written once, when it finishes, to
networks/<child_id>.pkl. The per-generation checkpoint then only says where the
search stands (generation, counts, random states, the population and the best
by their architecture and scores), so its size and write time stay flat however
many networks the run has evaluated; resume rebuilds the history from
children.csv and the network files.
"""
import csv
import io
import os
import pickle

from library_config import write_atomically

RECORD_FIELDS = ("child_id", "generation", "status", "mutation", "parents", "depth", "head", "n_params",
                 "max_tens", "flops", "flops_keras_flops", "flash_size", "flash_measured", "ram_size",
                 "ram_measured", "ram_activations_measured", "ram_persistent_measured", "latency_ms",
                 "val_accuracy", "val_f1", "test_accuracy", "test_f1", "deployed_test_accuracy",
                 "train_seconds", "reason", "adjustments", "architecture_text", "architecture")

# What a network state holds besides its architecture and scores: kept in its network file only.
HEAVY_STATE_FIELDS = ("layer_weights", "head_weights", "deployed_model_bytes")

CHECKPOINT_VERSION = 2  # 1: every network's weights inside the checkpoint (still read by resume)


class RecordsError(RuntimeError):
    """A record file of the run folder is missing or unreadable; the message names it."""


def light_state(state):
    """A network state (Net.to_state()) without weights and deployed bytes: what the
    search keeps in memory and in the checkpoint for every network."""
    return {name: value for name, value in state.items() if name not in HEAVY_STATE_FIELDS}


class RunRecords:
    """The record files of one run folder."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.records_path = os.path.join(run_dir, "children.csv")
        self.networks_dir = os.path.join(run_dir, "networks")
        self.checkpoint_path = os.path.join(run_dir, "checkpoint.pkl")

    # ----- children.csv ------------------------------------------------------
    def append(self, record):
        """Appends one network's record (a dict over RECORD_FIELDS) to children.csv."""
        new_file = not os.path.exists(self.records_path)
        with open(self.records_path, "a", newline="") as records_file:
            writer = csv.DictWriter(records_file, fieldnames=RECORD_FIELDS)
            if new_file:
                writer.writeheader()
            writer.writerow(record)

    def read(self):
        """The records of children.csv, in order, as dicts of text ([] before the first)."""
        if not os.path.exists(self.records_path):
            return []
        with open(self.records_path, newline="") as records_file:
            return list(csv.DictReader(records_file))

    def keep_first(self, n_records):
        """Cuts children.csv to its first n_records records (atomically). Raises RecordsError
        when it holds fewer: the file does not belong to the checkpoint."""
        rows = self.read()
        if len(rows) < n_records:
            raise RecordsError(f"{self.records_path} holds {len(rows)} records, the checkpoint counts "
                               f"{n_records}: the run folder's files do not belong together")
        lines = io.StringIO()
        writer = csv.DictWriter(lines, fieldnames=RECORD_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows[:n_records])
        write_atomically(self.records_path, lines.getvalue())

    def remove(self):
        if os.path.exists(self.records_path):
            os.remove(self.records_path)

    # ----- network files -----------------------------------------------------
    def network_path(self, child_id):
        return os.path.join(self.networks_dir, f"{child_id}.pkl")

    def save_network(self, child_id, result):
        """Writes one evaluated network's result ({'state', 'status', 'reason',
        'flops_keras_flops'}, as library_net.evaluate_network returns it), once, atomically."""
        os.makedirs(self.networks_dir, exist_ok=True)
        write_atomically(self.network_path(child_id), pickle.dumps(result))

    def network_state(self, child_id):
        """The network state (Net.to_state(), with weights and deployed bytes) of child_id's result."""
        return self.load_network(child_id)["state"]

    def load_network(self, child_id):
        """The result save_network wrote for child_id. Raises RecordsError naming the file."""
        path = self.network_path(child_id)
        try:
            with open(path, "rb") as network_file:
                return pickle.load(network_file)
        except (OSError, pickle.UnpicklingError, EOFError) as error:
            raise RecordsError(f"{path}: cannot read the network's results ({error})") from error

    # ----- checkpoint --------------------------------------------------------
    def has_checkpoint(self):
        return os.path.exists(self.checkpoint_path)

    def save_checkpoint(self, state):
        write_atomically(self.checkpoint_path, pickle.dumps(dict(state, version=CHECKPOINT_VERSION)))

    def load_checkpoint(self):
        with open(self.checkpoint_path, "rb") as checkpoint_file:
            return pickle.load(checkpoint_file)
