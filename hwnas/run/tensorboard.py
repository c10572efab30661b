"""TensorBoard event files in every run folder, so that runs are compared as Keras users compare
experiments: `tensorboard --logdir logs` shows every network of every run in the HParams table and
its parallel-coordinates view, and each run's best so far per generation as scalars.

Each evaluated network is an HParams session of its own (<run>/tensorboard/<child_id>/): its input
stage, depth, head and each block's settings as hyperparameters, its scores and hardware figures
as metrics (at step 0), its status a hyperparameter too (TensorBoard's metrics are numbers). The
search's best so far (by the first objective) and the generation's networks are scalars of
<run>/tensorboard/search/, step = generation. A network recorded again after a resume replaces
its session.
"""
import json
import os
import shutil

from hwnas.network.figures import HardwareFigures
from hwnas.run.listeners import Listener

FOLDER = "tensorboard"
SCORES = ("val_accuracy", "val_f1", "test_accuracy", "test_f1", "deployed_test_accuracy")
MEASURED = ("flash_measured", "ram_measured", "train_seconds", "epochs_trained")
METRICS = (*SCORES, *HardwareFigures.names(), *MEASURED)  # a network's numbers, in the HParams table
BLOCK_SETTINGS = ("filters", "kernel_size", "stride", "padding", "activation", "pooling", "pool_size")


def hyperparameters(record):
    """A network's hyperparameters (a ChildRecord): what it is, as the HParams table shows it."""
    architecture = json.loads(record.architecture)
    values = {"status": record.status, "generation": record.generation, "mutation": record.mutation,
              **{f"input_{name}": value for name, value in record.input.items() if value is not None},
              "depth": record.depth, "head": record.head}
    for position, block in enumerate(architecture["blocks"], start=1):
        values.update({f"block{position}_{name}": block[name] for name in BLOCK_SETTINGS})
    return values


def metrics(record):
    """{metric: number} of a network (a ChildRecord), those it has."""
    row = record.row()
    return {name: float(row[name]) for name in METRICS if row.get(name) is not None}


class TensorBoardListener(Listener):
    """Writes a run's TensorBoard event files (records: its RunRecords)."""

    def __init__(self, records):
        self.folder = os.path.join(records.run_dir, FOLDER)

    def network_recorded(self, search, child, record, flops_keras_flops):
        import tensorflow as tf
        from tensorboard.plugins.hparams import api as hp
        session = os.path.join(self.folder, record.child_id)
        shutil.rmtree(session, ignore_errors=True)  # recorded again after a resume: the same network anew
        writer = tf.summary.create_file_writer(session)
        with writer.as_default():
            hp.hparams(hyperparameters(record), trial_id=f"{os.path.basename(search.records.run_dir)}/{record.child_id}")
            for name, value in metrics(record).items():
                tf.summary.scalar(name, value, step=0)
        writer.close()

    def generation_ended(self, search, population, children, improved):
        import tensorflow as tf
        writer = tf.summary.create_file_writer(os.path.join(self.folder, "search"))
        objective = search.ranking.objectives.names[0]
        with writer.as_default():
            if search.absolute_best is not None:
                best = search.ranking.values(search.absolute_best)[objective]
                tf.summary.scalar(f"best_{objective}", best, step=search.i_gen)
            tf.summary.scalar("networks_evaluated", search.trials.n_evaluated, step=search.i_gen)
            tf.summary.scalar("elapsed_seconds", search.clock.elapsed_seconds(), step=search.i_gen)
        writer.close()
