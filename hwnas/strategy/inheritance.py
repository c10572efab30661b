"""Lamarckian inheritance: a child starts each fold from its parent's trained weights of that
fold, for every layer whose weight shapes the mutation left unchanged (a crossover child: from
the parent that gave the block); its other layers start fresh from its own seed.

Fold by fold, never across folds: a parent's weights trained on another fold's training part
have seen this fold's validation sessions, which would make every inherited score optimistic.
Where a layer comes from is its source: each block keeps the (child_id, block index) of the
evaluated block it was copied from (hwnas.strategy.search_space's operators set it; a block drawn new
has none), and a network keeps the child_id of the network its input stage and its head come from.
"""
from hwnas.network.head import CLASSIFIER


def own_sources(net):
    """Where net's layers come from, for a child made of it: net itself when it was evaluated
    (it has a child_id); else (a mutant of a mutant) where its own layers came from.
    Returns {"blocks": [(child_id, block index) or None], "input": child_id or None, "head": ...}."""
    if net.child_id is not None:
        return {"blocks": [(net.child_id, index) for index in range(len(net.block_list))],
                "input": net.child_id, "head": net.child_id}
    return {"blocks": [block.source for block in net.block_list], "input": net.input_source,
            "head": net.head_source}


def inherited_weights(child, parents):
    """The weights child takes from its parents (parents: {child_id: evaluated Net with its
    fold_weights}): ({fold: {child layer: weights}}, the parents' child_ids that gave some,
    layers inherited), a layer only when its weights have the shapes the child's layer needs."""
    pairs = []  # (child layer, parent id, parent layer)
    for block in child.block_list:
        if block.source is not None and block.source[0] in parents:
            parent_id, index = block.source
            ours, theirs = block.layer_names(), parents[parent_id].block_list[index].layer_names()
            pairs += [(ours[kind], parent_id, theirs[kind]) for kind in ("conv", "batchnorm")]
    stage_layer = child.input_stage.weights_layer  # (the same layer in the parent whose input stage it has)
    pairs += [(stage_layer, child.input_source, stage_layer)] if stage_layer else []
    pairs.append((CLASSIFIER, child.head_source, CLASSIFIER))
    shapes = child.weight_shapes()
    weights, givers, n_layers = {}, [], 0
    for child_layer, parent_id, parent_layer in pairs:
        parent = parents.get(parent_id)
        if parent is None or child_layer not in shapes or not parent.fold_weights:
            continue
        folds = {fold: layers.get(parent_layer) for fold, layers in parent.fold_weights.items()}
        if any(layer is None or [w.shape for w in layer] != [tuple(s) for s in shapes[child_layer]]
               for layer in folds.values()):
            continue
        for fold, layer in folds.items():
            weights.setdefault(fold, {})[child_layer] = layer
        givers.append(parent_id)
        n_layers += 1
    return weights, tuple(dict.fromkeys(givers)), n_layers
