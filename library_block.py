"""The specification's block module, kept where scripts written for the original toolkit import it:
one Conv1D block, its settings, shape arithmetic, hardware cost and Keras layers
(hwnas/network/block.py; the deployed model's fixed costs: hwnas/network/deployed_cost.py).
"""
from hwnas.network.block import ACTIVATIONS, PADDINGS, POOLINGS, Block  # noqa: F401
from hwnas.network.deployed_cost import DEPLOYED_COST  # noqa: F401
