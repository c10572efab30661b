"""What the deployed model costs on the device, computed without TensorFlow: the bytes the
converter and TFLM spend per op, tensor, filter and class (DEPLOYED_COST, by precision), and the
tensor arena TFLM's greedy memory planner gives a chain of ops (plan_chain_arena). The blocks,
the input stage and the head price themselves with these; hwnas.network.net adds them up.
"""

# Bytes the deployed model spends, by precision. Weights and activations take
# their width; the other entries are the converter's and TFLM's fixed bytes per
# op, tensor, filter and class: flatbuffer tables, shapes, names, quantization
# parameters, node structures and per-op data. They were fitted by least
# squares on random networks converted by TensorFlow 2.21 and measured by
# tflite-micro 0.dev20261023 (tests/benchmarks/calibrate_deployed_cost.py refits them);
# the head's entries are the head's (hwnas.network.head); an encoding's own op keeps its entries in its
# module (the byte table's GATHER: hwnas/network/encodings/embedding.py).
DEPLOYED_COST = {
    "int8": {"weight_bytes": 1, "activation_bytes": 1,
             "per_filter": 28,  # int32 bias + per-channel scale/zero point of weights and bias
             "conv_op": 1156, "tanh_op": 200, "tanh_after_batchnorm": 145, "pool_op": 178,
             "model_fixed": 1108, "per_class": 29, "flatten_op": 315, "gap_ops": 718,
             "persistent_fixed": 1328, "persistent_conv": 244, "persistent_per_filter": 8,
             "persistent_tanh": 105, "persistent_pool": 161, "persistent_per_class": 7,
             "persistent_flatten": 149, "persistent_gap": 329},
    "float32": {"weight_bytes": 4, "activation_bytes": 4,
                "per_filter": 4,  # float32 bias
                "conv_op": 1073, "tanh_op": 161, "tanh_after_batchnorm": 154, "pool_op": 141,
                "model_fixed": 923, "per_class": 5, "flatten_op": 283, "gap_ops": 649,
                "persistent_fixed": 1249, "persistent_conv": 244, "persistent_per_filter": 8,
                "persistent_tanh": 104, "persistent_pool": 160, "persistent_per_class": 0,
                "persistent_flatten": 148, "persistent_gap": 328},
}


def plan_chain_arena(tensor_bytes, scratch_bytes=None, alignment=16):
    """Bytes TFLM's greedy memory planner needs for a chain of ops.

    tensor_bytes: sizes of the model input and of each op's output, in op
    order (op i reads tensor i and writes tensor i + 1). scratch_bytes: {op
    index: [sizes]} of the scratch buffers ops request in their Prepare
    (planned with the tensors, alive while their op runs). Follows TFLM's
    GreedyMemoryPlanner: sizes rounded up to 16 bytes, buffers placed
    largest first (ties: the later buffer first), each at the lowest offset
    free during its lifetime. Returns the planned size: the arena's head.
    """
    scratches = [(op, size) for op, sizes in sorted((scratch_bytes or {}).items()) for size in sizes]
    sizes = [-(-size // alignment) * alignment for size in [*tensor_bytes, *(size for _, size in scratches)]]
    n_ops = len(tensor_bytes) - 1
    # Tensor i is written by op i - 1 (the input exists from op 0) and read by op i;
    # the model output stays until the last op. A scratch buffer lives during its op.
    first_use = [max(0, i - 1) for i in range(len(tensor_bytes))] + [op for op, _ in scratches]
    last_use = [min(i, n_ops - 1) for i in range(len(tensor_bytes))] + [op for op, _ in scratches]
    placed = []  # (offset, size, buffer index), kept sorted by offset
    order = sorted(reversed(range(len(sizes))), key=lambda i: -sizes[i])
    for i in order:
        offset = 0
        for other_offset, other_size, j in placed:
            if last_use[j] < first_use[i] or last_use[i] < first_use[j]:
                continue  # not alive at the same time
            if other_offset - offset >= sizes[i]:
                break  # the gap before this buffer is big enough
            offset = max(offset, other_offset + other_size)
        placed.append((offset, sizes[i], i))
        placed.sort(key=lambda entry: entry[0])  # stable: equal offsets keep their order, as in TFLM
    return max(offset + size for offset, size, _ in placed)
