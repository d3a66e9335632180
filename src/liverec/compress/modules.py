"""Drop-in compressed modules and the surgery that puts them into any model.

Models keep their own forward code: an `nn.Embedding` is swapped for a `QuantizedEmbedding` (same
call, same `weight`, same `num_embeddings`), a `nn.Linear` for torch's dynamic int8 Linear. Every
transformation can also run on an untrained skeleton (`like=` shapes only), which is how a saved
compressed model is rebuilt before its tensors are loaded: no pickle, no custom class registry.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from torch import nn

from liverec.compress import quantize as q
from liverec.errors import LiverecError


class QuantizedEmbedding(nn.Module):
    """An `nn.Embedding` stored as row-wise 8- or 4-bit codes; lookups expand only the asked rows.

    Single-column tables (biases) are quantised as one row of `num_embeddings` values instead: a
    per-row scale would cost as much as the value itself. `scheme` is that of `quantize.quantize_rows`
    (artifacts written before symmetric int8 existed are affine at 8 bits too).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int, scheme: str | None = None):
        super().__init__()
        if bits not in q.BITS:
            raise LiverecError(f"quantisation bits must be one of {list(q.BITS)}, got {bits}")
        scheme = scheme or q.DEFAULT_SCHEME[bits]
        if scheme not in q.SCHEMES or (scheme == "symmetric" and bits != 8):
            raise LiverecError(f"quantisation scheme {scheme!r} is not available at {bits} bits")
        self.num_embeddings, self.embedding_dim, self.bits = num_embeddings, embedding_dim, bits
        self.scheme = scheme
        self.by_column = embedding_dim == 1
        rows, dim = (1, num_embeddings) if self.by_column else (num_embeddings, embedding_dim)
        width = dim if bits == 8 else (dim + 1) // 2
        # the buffers' dtypes matter: load_state_dict casts into them silently
        if scheme == "symmetric":
            self.register_buffer("codes", torch.zeros(rows, width, dtype=torch.int8))
            self.register_buffer("scale", torch.zeros(rows, dtype=torch.uint8))  # exponents
            self.register_buffer("base", torch.ones(1))
            self.offset = None
        else:
            self.register_buffer("codes", torch.zeros(rows, width, dtype=torch.uint8))
            self.register_buffer("scale", torch.zeros(rows, dtype=torch.float16))
            self.register_buffer("offset", torch.zeros(rows, dtype=torch.float16))
            self.base = None

    @classmethod
    def from_float(cls, weight: torch.Tensor, bits: int, scheme: str | None = None) -> QuantizedEmbedding:
        """Quantise a (num_embeddings, embedding_dim) float table."""
        module = cls(weight.shape[0], weight.shape[1], bits, scheme)
        table = q.quantize_rows(weight.T if module.by_column else weight, bits, module.scheme)
        module.codes, module.scale = table.codes, table.scale
        if module.scheme == "symmetric":
            module.base = table.base
        else:
            module.offset = table.offset
        return module

    def table(self) -> q.QuantizedTable:
        dim = self.num_embeddings if self.by_column else self.embedding_dim
        return q.QuantizedTable(self.codes, self.scale, self.offset, self.bits, dim, self.base)

    @property
    def weight(self) -> torch.Tensor:
        """The whole table dequantised (num_embeddings, embedding_dim): a float copy, use sparingly."""
        full = q.dequantize(self.table())
        return full.T if self.by_column else full

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (...) -> (..., embedding_dim) float32."""
        if self.by_column:  # one row of num_embeddings values: a bias vector, cheap to expand
            return self.weight[ids]
        return q.dequantize(self.table(), ids)

    def dot_all(self, queries: torch.Tensor) -> torch.Tensor:
        """queries (B, D) -> (B, num_embeddings) without a float copy of the table."""
        if self.by_column:
            return queries @ self.weight.T
        return q.dot_all(self.table(), queries)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, bits={self.bits}, {self.scheme}"


def named_of_type(model: nn.Module, kind: type) -> Iterator[tuple[str, nn.Module]]:
    """(dotted name, module) of every submodule of type `kind`, listed before any is replaced."""
    return iter([(name, m) for name, m in model.named_modules() if type(m) is kind])


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where the submodule called `name` (dotted) was."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def quantize_embeddings(
    model: nn.Module, bits: int, like: bool = False, scheme: str | None = None
) -> list[str]:
    """Swap every nn.Embedding for a QuantizedEmbedding (`like`: empty skeleton); returns names."""
    names = []
    for name, emb in named_of_type(model, nn.Embedding):
        if like:
            new = QuantizedEmbedding(emb.num_embeddings, emb.embedding_dim, bits, scheme)
        else:
            new = QuantizedEmbedding.from_float(emb.weight.detach(), bits, scheme)
        replace_module(model, name, new)
        names.append(name)
    if not names:
        raise LiverecError(f"{type(model).__name__} has no embedding table to quantise")
    return names


def dynamic_int8_linear(model: nn.Module) -> list[str]:
    """Post-training dynamic int8 for every nn.Linear (weights int8 per output channel,
    activations quantised on the fly); returns the names of the converted layers."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = [name for name, _ in named_of_type(model, nn.Linear)]
    if not names:
        raise LiverecError(
            f"{type(model).__name__} has no Linear layer; use int8 / int4 for its embedding tables"
        )
    with warnings.catch_warnings():  # torch 2.9+ marks torch.ao as deprecated; it is what works today
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        quantize_dynamic(
            model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True
        )
    return names


def dynamic_linear_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Plain tensors of every dynamic int8 Linear: safetensors cannot hold quantised tensors."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    state = {}
    for name, layer in named_of_type(model, DynamicLinear):
        weight, bias = layer._weight_bias()
        state[f"{name}.qweight"] = weight.int_repr()  # (out, in) int8
        state[f"{name}.qscale"] = weight.q_per_channel_scales().float()  # (out,)
        state[f"{name}.qzero"] = weight.q_per_channel_zero_points()  # (out,)
        if bias is not None:
            state[f"{name}.bias"] = bias.detach()
    return state


def load_dynamic_linear_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Inverse of `dynamic_linear_state`, into a model already passed through `dynamic_int8_linear`."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    for name, layer in named_of_type(model, DynamicLinear):
        if f"{name}.qweight" not in state:
            raise LiverecError(f"the compressed artifact lacks the int8 weights of {name!r}")
        weight = torch._make_per_channel_quantized_tensor(
            state.pop(f"{name}.qweight"), state.pop(f"{name}.qscale").double(),
            state.pop(f"{name}.qzero"), 0,
        )
        layer.set_weight_bias(weight, state.pop(f"{name}.bias", None))


def cast_floats(model: nn.Module, dtype: torch.dtype) -> None:
    """Store every floating parameter and buffer as `dtype` (fp16 / bf16 export)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(dtype)
