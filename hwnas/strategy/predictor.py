"""A predictor in front of training: of many valid candidates the analytic check screens in a
second, train those a model fitted on the networks already trained ranks first.

The model maps a network's description (its input stage, head, depth, each block's settings as
built, position by position) and its hardware figures to its validation score; a random forest
(scikit-learn) was chosen by its rank correlation on networks held back
(docs/study_predictor.md). It is fitted again, from nothing, at each generation on every network
trained to the full budget, with the search's seed, so the same search makes the same choices.
"""
import math

import numpy as np
from scipy.stats import spearmanr
from sklearn.ensemble import RandomForestRegressor

from hwnas.network.block import ACTIVATIONS, POOLINGS
from hwnas.network.figures import HardwareFigures

# A block's settings that are names, as numbers: their place among the search space's choices.
ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}
POOLING_CODES = {name: code for code, name in enumerate(POOLINGS)}
# The figures it learns from: all but the energy, which is the latency times the device's power.
FIGURES = tuple(name for name in HardwareFigures.names() if name != "energy_mj")


def features(net, figures, max_depth):
    """A network as numbers: its figures (log scale), input stage, head, depth, and per block
    position up to max_depth its settings as built and its output length (zeros past its depth)."""
    row = [math.log1p(max(getattr(figures, name), 0)) for name in FIGURES]
    row += [*net.input_stage.predictor_features(), net.head == "gap", len(net.block_list)]
    for position in range(max_depth):
        if position < len(net.block_list):
            block = net.block_list[position]
            row += [math.log2(block.filters), block.kernel_size_used, block.stride, block.padding == "same",
                    ACTIVATION_CODES.get(block.activation, 0), POOLING_CODES[block.pooling_used],
                    block.pool_size_used if block.pooling_used != "none" else 0, math.log1p(block.output_size)]
        else:
            row += [0] * 8
    return np.array(row, dtype=float)


class Predictor:
    """Predicts the first objective's value of networks from those trained so far.
    figures_of(net): its hardware figures; max_depth: the search space's; seed: the search's."""

    def __init__(self, figures_of, max_depth, seed):
        self.figures_of, self.max_depth, self.seed = figures_of, max_depth, seed
        self.model, self.n_fitted = None, 0

    def fit(self, networks, scores):
        """Fits on networks and their scores (the first objective, larger is better)."""
        self.model = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=self.seed, n_jobs=1)
        self.model.fit(np.stack([features(net, self.figures_of(net), self.max_depth) for net in networks]), scores)
        self.n_fitted = len(networks)

    def chooser(self, trained, warmup):
        """Of trained [(network, score)]: None while fewer than warmup; else, fitted on them, a function
        that takes candidates and returns the one predicted best (its predicted_score set)."""
        if len(trained) < warmup:
            return None
        self.fit([network for network, _ in trained], [score for _, score in trained])

        def best_predicted(candidates):
            predicted = self.predict(candidates)
            best = int(predicted.argmax())
            candidates[best].predicted_score = float(predicted[best])
            return candidates[best]

        return best_predicted

    def checked(self, networks, ranking):
        """How well the predictions of networks (evaluated, predicted_score set when it chose them)
        ranked them: (Spearman's correlation with their first objective, how many it predicted, how
        many it was fitted on); networks stopped early are left out."""
        predicted = [getattr(network, "predicted_score", None) for network in networks]
        measured = [None if network.stopped_early else ranking.fitness(network) for network in networks]
        return rank_correlation(predicted, measured), sum(p is not None for p in predicted), self.n_fitted

    def predict(self, networks):
        return self.model.predict(np.stack([features(net, self.figures_of(net), self.max_depth) for net in networks]))


def rank_correlation(predicted, measured):
    """Spearman's correlation of two lists (None with fewer than three pairs or no spread)."""
    pairs = [(p, m) for p, m in zip(predicted, measured) if p is not None and m is not None]
    if len(pairs) < 3 or len({p for p, _ in pairs}) < 2 or len({m for _, m in pairs}) < 2:
        return None
    return float(spearmanr(*zip(*pairs)).statistic)
