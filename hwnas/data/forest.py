"""A reference forest in every run: a 200-tree random forest on the run's own split, the first
sanity check of a searched network (it should beat it) and of the data (a forest near 1.0 says
the labels can be read from a few bytes: addresses, ports, fixed headers, not the traffic).

The forest reads every byte of a session as a number (a forest is blind to how bytes are scaled),
is fitted on the training split (a stratified sample of at most MAX_SESSIONS on very large sets)
and scored on the whole test split, class by class too. It costs seconds on the sets of data/
(benchmarked in docs/reference_forest.md), a few percent of a default run.
"""
import dataclasses

import numpy as np

from hwnas.data.metrics import compute_descriptors, per_class_descriptors
from hwnas.data.samples import stratified_sample

N_TREES = 200
MAX_SESSIONS = 20_000  # training sessions at most: beyond, a forest costs minutes and says nothing new
NEAR_PERFECT = 0.99  # a test accuracy from which the labels may be readable from a few bytes
N_POSITIONS = 10  # byte positions named when it is near-perfect


@dataclasses.dataclass(frozen=True)
class ReferenceForest:
    """A forest's test figures on a run's split: accuracy and macro-F1 (over the classes with test
    sessions), per class ({"precision", "recall", "f1", "support"}: lists by label), the sessions it
    was fitted on (of how many), and the byte positions it relies on most, most first."""
    accuracy: float
    macro_f1: float
    per_class: dict
    train_sessions: int
    of_sessions: int
    top_positions: tuple
    seconds: float

    @property
    def near_perfect(self):
        return self.accuracy >= NEAR_PERFECT

    def warning(self):
        """The warning a near-perfect forest calls for ('' when it is not)."""
        if not self.near_perfect:
            return ""
        return (f"the reference forest scores {self.accuracy:.4f} on the test split: the labels may be readable "
                f"from a few bytes (addresses, ports, fixed headers), not from the traffic; it relies most on byte "
                f"positions {', '.join(map(str, self.top_positions))}. A searched network's accuracy says little "
                f"here: anonymise those bytes (B00_pcap_to_idx.py's origin recipe) or leave them out")

    def line(self):
        """Its figures, as the NAS log's header and the console say them."""
        sample = (f"{self.train_sessions} of the {self.of_sessions} training sessions"
                  if self.train_sessions < self.of_sessions else f"the {self.train_sessions} training sessions")
        return (f"Reference forest ({N_TREES} trees on {sample}, {self.seconds:.0f} s): test accuracy "
                f"{self.accuracy:.4f}, macro-F1 {self.macro_f1:.4f}.")

    def as_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved):
        return cls(**dict(saved, top_positions=tuple(saved["top_positions"])))


def reference_forest(data, seed=0, n_jobs=1, max_sessions=MAX_SESSIONS):
    """The ReferenceForest of data (a SessionData): fitted on its training split (a stratified sample
    of at most max_sessions), scored on its test split, with the search's seed and n_jobs cores."""
    import time

    from sklearn.ensemble import RandomForestClassifier
    started = time.perf_counter()
    y_train = data.Y_train.argmax(axis=1)
    train = stratified_sample(np.arange(len(y_train)), y_train, max_sessions, np.random.default_rng([seed, 5]))
    X_train = np.asarray(data.X_train[train]).reshape(len(train), -1)
    forest = RandomForestClassifier(n_estimators=N_TREES, random_state=seed, n_jobs=n_jobs)
    forest.fit(X_train, y_train[train])
    X_test = np.asarray(data.X_test).reshape(len(data.X_test), -1)
    predicted = forest.predict(X_test)
    metrics = compute_descriptors(data.Y_test, predicted)
    per_class, _ = per_class_descriptors(data.Y_test, predicted, data.num_classes)
    top = np.argsort(-forest.feature_importances_, kind="stable")[:N_POSITIONS]
    return ReferenceForest(metrics["accuracy"], metrics["f1"], per_class, len(train), len(y_train),
                           tuple(int(position) for position in top), round(time.perf_counter() - started, 1))
