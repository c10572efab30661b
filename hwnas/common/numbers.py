"""What counts as a number in a parameter: Python's bool is an int (True == 1), but no count,
threshold or seed of this toolkit is a truth value, so each check here leaves bools out."""
import numpy as np


def is_integer(value):
    """Whether value is an integer (Python's or NumPy's), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value):
    """Whether value is a real number (Python's or NumPy's), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
