"""The specification's network module, kept where scripts written for the original toolkit import it:
a network of Conv1D blocks, built, trained and measured (hwnas/network/net.py, with training.py,
deploy.py and the input stage, blocks and head beside it).
"""
from hwnas.network.net import Net, architecture_key, blocks_from_settings, net_from_architecture  # noqa: F401
from hwnas.network.training import DEFAULT_TRAIN_SETTINGS, TrainingFailed  # noqa: F401
