"""The search's data held once for all the worker processes of this machine.

Each worker process used to get its own copy of the data set (a float32 copy of every session);
with many sessions and workers that copy is most of the memory a search takes. Instead the
driver writes the arrays once into an anonymous in-memory file (memfd on Linux; an unlinked
temporary file elsewhere) and hands its descriptor to each worker it starts, which maps the file
read-only: the sessions are in memory once, however many workers read them, and the file goes
away with the last process that holds it, kill -9 included (nothing is left in /tmp).
"""
import mmap
import os
import tempfile
from typing import NamedTuple

import numpy as np

from hwnas.data.idx import SessionData

ALIGNMENT = 64  # bytes: each array starts on a cache line


class ArrayPlace(NamedTuple):
    """Where one array lies in the shared file: its byte offset, dtype and shape."""
    offset: int
    dtype: str
    shape: tuple


class SharedLayout(NamedTuple):
    """What a worker needs to map the data: the file's size and each SessionData field's place
    (it travels to the worker pickled; the file's descriptor is passed with the process)."""
    size: int
    places: tuple  # ArrayPlace of X_train, Y_train, X_test, Y_test


class SharedData:
    """data (a SessionData) written once into a file that worker processes map (open_shared).
    fd: its descriptor, to pass to a worker process; close() lets go of it in this process."""

    def __init__(self, data):
        self.fd = _anonymous_file()
        places, offset = [], 0
        for array in data:
            array = np.ascontiguousarray(array)
            offset = -(-offset // ALIGNMENT) * ALIGNMENT
            os.pwrite(self.fd, array.tobytes(), offset) if array.nbytes else None
            places.append(ArrayPlace(offset, array.dtype.str, tuple(array.shape)))
            offset += array.nbytes
        os.ftruncate(self.fd, max(offset, 1))
        self.layout = SharedLayout(max(offset, 1), tuple(places))

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def open_shared(fd, layout):
    """The SessionData a SharedData holds, as read-only arrays on the file of descriptor fd
    (mapped: its pages are the driver's, shared by every worker that maps them)."""
    mapped = mmap.mmap(fd, layout.size, access=mmap.ACCESS_READ)
    arrays = [np.frombuffer(mapped, dtype=np.dtype(place.dtype), count=int(np.prod(place.shape)),
                            offset=place.offset).reshape(place.shape) for place in layout.places]
    return SessionData(*arrays)


def _anonymous_file():
    """A descriptor of a new file with no name: a memfd where the system has them, else a
    temporary file unlinked at once."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("hwnas-data")
    handle = tempfile.TemporaryFile()
    fd = os.dup(handle.fileno())
    handle.close()
    return fd
