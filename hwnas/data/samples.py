"""The samples a search takes of its data: what a candidate trains, is validated and tested on when
each may use at most max_search_sessions sessions of a part (stratified, drawn once from the seed),
and the final training's held-out tenth."""
import hashlib
import math

import numpy as np
from sklearn.model_selection import train_test_split


# ----- the data budget of a search, and the final training's split ---------------------------
def stratified_sample(indices, labels, n_samples, rng):
    """At most n_samples of indices, drawn without replacement by class in proportion to the
    class's share (largest remainders first), every class present keeping at least one; sorted.
    labels: the integer label of each index. All of them when n_samples is None or not smaller."""
    indices, labels = np.asarray(indices), np.asarray(labels)
    if n_samples is None or n_samples >= len(indices):
        return indices
    classes, counts = np.unique(labels, return_counts=True)
    if n_samples < len(classes):
        raise ValueError(f"a sample of {n_samples} cannot hold each of the {len(classes)} classes")
    shares = counts * (n_samples - len(classes)) / len(indices)  # one per class first, the rest by share
    taken = np.minimum(1 + np.floor(shares).astype(int), counts)
    by_remainder = np.argsort(-(shares - np.floor(shares)), kind="stable")
    for position in by_remainder:
        if taken.sum() >= n_samples:
            break
        if taken[position] < counts[position]:
            taken[position] += 1
    chosen = [rng.choice(indices[labels == label], size, replace=False) for label, size in zip(classes, taken)]
    return np.sort(np.concatenate(chosen))


def test_sample(data, max_sessions, seed):
    """The data candidates of a search are tested on when each may use at most max_sessions
    sessions of a part: the test split as a stratified sample of at most max_sessions, drawn
    once from seed (the same for every candidate, and after a resume); data as it is when the
    test split is no larger or max_sessions is None. Raises ValueError naming max_sessions
    when it cannot hold every class."""
    if max_sessions is not None and max_sessions < data.num_classes:
        raise ValueError(f"max_search_sessions={max_sessions} is below the data's {data.num_classes} classes: "
                         f"a candidate's sample of a fold must hold every class")
    y_test = data.Y_test.argmax(axis=1)
    test = stratified_sample(np.arange(len(y_test)), y_test, max_sessions, np.random.default_rng([seed, 2]))
    if len(test) == len(y_test):
        return data
    return data._replace(X_test=data.X_test[test], Y_test=data.Y_test[test])


def fold_samples(folds, y, max_sessions, seed):
    """The folds candidates of a search train and are validated on when each may use at most
    max_sessions sessions of a part: each fold's training and validation parts as stratified
    samples of at most max_sessions (y: the integer labels), drawn once from seed (a stream of
    its own: the split and the folds use seed itself); the folds as they are when max_sessions is None."""
    if max_sessions is None:
        return folds
    y, rng = np.asarray(y), np.random.default_rng([seed, 3])
    return [(stratified_sample(train, y[train], max_sessions, rng),
             stratified_sample(validation, y[validation], max_sessions, rng)) for train, validation in folds]


def holdout_split(Y, fraction=0.1, seed=0, X=None):
    """The final training's one fold: (training indices, validation indices), a stratified
    fraction of the samples (one-hot labels Y) held out, from seed. With the samples X, copies of
    one session fall on the same side: traffic captures repeat sessions byte for byte, and a
    held-out copy of a training session would flatter the score the finalists are chosen by.
    Without copies the split is the same as without X."""
    labels = np.asarray(Y).argmax(axis=1)
    if X is None:
        return _stratified_holdout(labels, fraction, seed)
    first, copy_of = first_copies(X)
    _, validation = _stratified_holdout(labels[first], fraction, seed)
    held_out = np.isin(copy_of, validation)
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)


def _stratified_holdout(labels, fraction, seed):
    n_classes = len(np.unique(labels))
    n_validation = max(n_classes, math.ceil(fraction * len(labels)))  # every class on both sides
    train, validation = train_test_split(np.arange(len(labels)), test_size=n_validation, stratify=labels,
                                         random_state=seed)
    return np.sort(train), np.sort(validation)


def first_copies(X):
    """(the index of each distinct session's first copy, in order; for every session, the position
    in that list of its first copy). Sessions are compared by their bytes' digest."""
    rows = np.ascontiguousarray(np.asarray(X).reshape(len(X), -1))
    digests = np.array([hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows])
    _, first, inverse = np.unique(digests, return_index=True, return_inverse=True)
    order = np.argsort(first)  # distinct sessions in the order of their first copy
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return first[order], position[inverse]
