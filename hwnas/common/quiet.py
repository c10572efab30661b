"""TensorFlow kept quiet: what its native code prints straight to file descriptors 1 and 2, and
its Python loggers' retracing and deprecation notes."""
import logging
import os
import sys
import tempfile


class quiet_native_output:
    """Sends what native (C++) code writes to file descriptors 1 and 2 into a
    temporary file while the block runs; the text is kept in .text.

    TensorFlow, its converter and TFLM print from C++ straight to the process's
    descriptors, past Python's sys.stdout and TF_CPP_MIN_LOG_LEVEL, so only a
    descriptor swap catches it. enabled=False lets everything through.
    """

    def __init__(self, enabled=True):
        self.enabled = enabled
        self.text = ""

    def __enter__(self):
        if self.enabled:
            sys.stdout.flush()
            sys.stderr.flush()
            self._capture = tempfile.TemporaryFile(mode="w+b")
            self._saved = [os.dup(1), os.dup(2)]
            os.dup2(self._capture.fileno(), 1)
            os.dup2(self._capture.fileno(), 2)
        return self

    def __exit__(self, *exc_info):
        if self.enabled:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(self._saved[0], 1)
            os.dup2(self._saved[1], 2)
            for descriptor in self._saved:
                os.close(descriptor)
            self._capture.seek(0)
            self.text = self._capture.read().decode(errors="replace")
            self._capture.close()
        return False


def quiet_tensorflow_logs():
    """Keeps TensorFlow's and absl's Python loggers to errors (retracing and deprecation notes)."""
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
