"""A fold's training, kept between successive halving's rungs and continued where it ended.

Successive halving promotes the best candidates of a rung to a longer budget.
Training them again from scratch would repeat the rung's epochs; continuing them
needs everything that decides the next epoch: the model's variables (weights,
BatchNorm statistics, dropout's seed state), the optimizer's (step count, Adam's
moments, learning rate), and where early stopping and the learning-rate schedule stood (their
waits, their best loss, early stopping's best weights). A fold that early
stopping ended is finished: it is not trained further, its best weights stand.

The batches of the continued epochs are shuffled from a seed of their own (the
fold's seed and the epoch the continuation starts at), so a continued network
is deterministic for its seed, though not bit-identical to one trained its
whole budget in one go.
"""
import keras


def continuation_seed(fold_seed, epochs_done):
    """The seed a fold's training continues with after epochs_done epochs."""
    return fold_seed + 10_000 * epochs_done


def layer_variables(model):
    """Every variable of the model's layers (weights, BatchNorm statistics, dropout's seed
    state), in a fixed order; not the metrics'."""
    return [variable for layer in model.layers for variable in layer.variables]


class FoldTrainingState(keras.callbacks.Callback):
    """The last callback of a fold's fit: puts a saved state back into early stopping and
    the learning-rate schedule when training begins (after they reset themselves), and
    saves the fold's state (self.saved) after its last epoch, before early stopping
    restores its best weights."""

    def __init__(self, early_stopping, reduce_lr, epochs, epoch_val_accuracy, saved=None):
        super().__init__()
        self.early_stopping, self.reduce_lr, self.epochs = early_stopping, reduce_lr, epochs
        self.epoch_val_accuracy = list(epoch_val_accuracy)  # of every epoch so far, the new ones appended
        self.saved = saved

    def on_train_begin(self, logs=None):
        if self.saved is not None:
            for callback, fields in ((self.early_stopping, self.saved["early_stopping"]),
                                     (self.reduce_lr, self.saved["reduce_lr"])):
                for name, value in fields.items():
                    setattr(callback, name, value)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_val_accuracy.append(float(logs["val_accuracy"]))
        finished = bool(self.model.stop_training)  # early stopping (or a NaN loss) ended it
        if finished or epoch + 1 == self.epochs:
            self.saved = {
                "epochs_done": epoch + 1, "finished": finished,
                "model_variables": [variable.numpy() for variable in layer_variables(self.model)],
                "optimizer_variables": [variable.numpy() for variable in self.model.optimizer.variables],
                "epoch_val_accuracy": list(self.epoch_val_accuracy),
                "early_stopping": {name: getattr(self.early_stopping, name)
                                   for name in ("wait", "best", "best_epoch", "best_weights")},
                "reduce_lr": {name: getattr(self.reduce_lr, name) for name in ("wait", "best", "cooldown_counter")}}


def restore(model, saved):
    """Gives the compiled model the variables of a saved fold: its weights as training left
    them (or, for a finished fold, early stopping's best weights) and its optimizer's state."""
    for variable, value in zip(layer_variables(model), saved["model_variables"]):
        variable.assign(value)
    if saved["finished"] and saved["early_stopping"]["best_weights"] is not None:
        model.set_weights(saved["early_stopping"]["best_weights"])
    for variable, value in zip(model.optimizer.variables, saved["optimizer_variables"]):
        variable.assign(value)  # the step count, Adam's moments and the learning rate the schedule left
