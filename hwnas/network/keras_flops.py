"""keras-flops on TensorFlow 2.21 and Keras 3: the FLOPs reference the field uses, kept working.

keras-flops 0.1.2 (2020) is the FLOPs count NAS papers report, but on TensorFlow >= 2.13 and
Keras 3 it breaks twice:
 1. importing it registers profiler statistics for ops that TensorFlow now registers itself
    ("AddV2"), and TensorFlow's registry raises KeyError "Registering two statistical
    functions". It is imported here with duplicate registrations skipped, so TensorFlow's own
    function stays and keras-flops adds only what TensorFlow lacks (its inference
    FusedBatchNormV3 and Max).
 2. its get_flops builds input specs as `[batch] + inp.shape[1:]`, which fails on Keras 3's
    tuple shapes. keras_flops_count does what it does (freeze the inference graph, ask
    TensorFlow's v1 profiler for float operations) with tuple shapes.
"""
import tensorflow as tf

_keras_flops_module = None


def import_keras_flops():
    """Imports keras-flops with the registrations TensorFlow already has skipped (once); returns the module."""
    global _keras_flops_module
    if _keras_flops_module is not None:
        return _keras_flops_module
    from tensorflow.python.framework import ops as tf_ops

    register_original = tf_ops.RegisterStatistics.__call__

    def register_unless_present(decorator, function):
        key = f"{decorator._op_type},{decorator._statistic_type}"
        if key in tf_ops._stats_registry.list():
            return function
        return register_original(decorator, function)

    tf_ops.RegisterStatistics.__call__ = register_unless_present
    try:
        import keras_flops
    finally:
        tf_ops.RegisterStatistics.__call__ = register_original
    _keras_flops_module = keras_flops
    return keras_flops


def keras_flops_count(model, batch_size=1):
    """FLOPs of one inference of `model` (Keras 3), counted by keras-flops' registry.

    Raises RuntimeError if the profiler finds no float operation: a failure to
    measure must never pass a threshold as zero.
    """
    import_keras_flops()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2_as_graph
    input_spec = tf.TensorSpec((batch_size,) + tuple(model.inputs[0].shape[1:]), model.inputs[0].dtype)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(input_spec)
    frozen, _ = convert_variables_to_constants_v2_as_graph(concrete)
    options = (tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build())
    # TensorFlow's v1 profiler warns of its own deprecation on every call.
    logger_level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")
    try:
        profile = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(),
                                                cmd="scope", options=options)
    finally:
        tf.get_logger().setLevel(logger_level)
    if profile is None or profile.total_float_ops <= 0:
        raise RuntimeError(f"keras-flops found no float operations in model {model.name}")
    return int(profile.total_float_ops)
