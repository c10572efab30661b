"""What a network sees of each byte: the input encodings, by name.

Each is a class of its own module (scaled.py, embedding.py) that owns everything about itself
(base.py says what); nothing else asks which one it is. A new encoding is a module here, a line
below, its test, and README's list.
"""
from hwnas.network.encodings.embedding import Embedding
from hwnas.network.encodings.scaled import Scaled

ENCODINGS = {encoding.name: encoding for encoding in (Scaled, Embedding)}
# What input_encoding_choices=None searches, in the order the smart start tries them; those that read
# byte values only when the data are bytes (hwnas.strategy.search_space.input_choices_on).
BY_DEFAULT = ("embedding", "scaled")
# The encodings' own settings beside the length (each drawn from the search's <parameter>_choices).
PARAMETERS = tuple(dict.fromkeys(name for encoding in ENCODINGS.values() for name in encoding.parameters))
