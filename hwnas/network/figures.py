"""A network's hardware figures, one typed record: what the thresholds, the user's constraints and
the objectives read, what children.csv and pareto.csv hold, what the predictor learns from.

Every figure is named here once, with its unit, the threshold parameter that limits it and
whether the device's profile gives it: add a field and each of those places has it. All are
known before any training, from the cost model (the input stage's, the blocks' and the head's
costs added up) and the target device's profile.
"""
import dataclasses


def _figure(threshold, unit, on_device=False):
    return dataclasses.field(default=None, metadata={"threshold": threshold, "unit": unit, "on_device": on_device})


@dataclasses.dataclass(frozen=True)
class HardwareFigures:
    """n_params as Keras counts them; max_tens: elements of the largest activation tensor of the
    device model (the input included); flops of one inference as keras-flops counts them;
    flash_size: bytes of the TFLite flatbuffer at the deployment precision; ram_size: bytes of
    TFLM's tensor arena for it; latency_ms and energy_mj of one inference on the target device
    (its profile's estimate; None before the device is asked)."""
    n_params: int = _figure("params_thr", "parameters")
    max_tens: int = _figure("max_tens_thr", "elements")
    flops: int = _figure("flops_thr", "FLOPs")
    flash_size: int = _figure("flash_thr", "bytes")
    ram_size: int = _figure("ram_thr", "bytes")
    latency_ms: float = _figure("latency_thr", "ms", on_device=True)
    energy_mj: float = _figure("energy_thr", "mJ", on_device=True)

    @classmethod
    def names(cls):
        """The figures' names, in order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def device_names(cls):
        """The names of the figures the target device's profile gives (latency, energy)."""
        return tuple(field.name for field in dataclasses.fields(cls) if field.metadata["on_device"])

    @classmethod
    def thresholds(cls):
        """{threshold parameter: the figure it limits}."""
        return {field.metadata["threshold"]: field.name for field in dataclasses.fields(cls)}

    @classmethod
    def unit(cls, name):
        return next(field.metadata["unit"] for field in dataclasses.fields(cls) if field.name == name)

    def as_dict(self):
        """{name: value}: what a user's constraint or objective function reads."""
        return dataclasses.asdict(self)

    def on_device(self, latency_ms, energy_mj):
        """These figures with the device's latency and energy."""
        return dataclasses.replace(self, latency_ms=latency_ms, energy_mj=energy_mj)
