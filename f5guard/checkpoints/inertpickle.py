"""Reading the structure of a ``torch.save`` pickle without torch and without executing anything from it.

Tensors become ``TensorRef`` placeholders (which storage, which shape), torch's classes and constants become
inert markers, and every global outside a small allow-list is refused: a checkpoint from anywhere (Drive, a
download) can be inspected by the daemon safely. The storages it refers to are recorded so the caller can check
that the zip holds each one with the right size.
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass
from typing import Any

ITEMSIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16, "UntypedStorage": 1,
}  # fmt: skip
_DTYPES = {
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "complex64", "complex128", "float8_e4m3fn", "float8_e5m2", "double", "float", "half", "long", "int",
}  # fmt: skip
_TENSOR_REBUILDERS = {
    "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
    "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_nested_tensor",
    "_rebuild_device_tensor_from_numpy", "_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass",
}  # fmt: skip


@dataclass(frozen=True)
class TensorRef:
    """Stands in for a tensor: records which storage it points to, holds no data."""

    rebuilder: str
    storage: str | None
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class _Marker:
    """Stands in for a torch class or constant (a storage type, a dtype, a layout, a device)."""

    qualname: str


def _tensor_builder(qualname: str) -> Any:
    def build(*args: Any, **_: Any) -> TensorRef:
        storage = next((a for a in args if isinstance(a, _StorageRef)), None)
        # _rebuild_tensor_v2(storage, offset, size, stride, ...): the size tuple follows the offset
        shape = next((tuple(a) for a in args[2:3] if isinstance(a, tuple) and all(isinstance(x, int) for x in a)), None)
        return TensorRef(qualname, storage.key if storage else None, shape)

    return build


def _from_type_v2(func: Any, _new_type: Any, args: Any, _state: Any) -> Any:
    # torch._tensor._rebuild_from_type_v2(func, type, args, state): func is itself a stand-in
    return func(*args) if callable(func) else TensorRef("_rebuild_from_type_v2", None)


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    # protocol-2 pickles spell bytes as _codecs.encode(str, "latin1"); allow exactly that
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("refusing _codecs.encode with an unexpected encoding")
    return text.encode("latin1")


@dataclass(frozen=True)
class _StorageRef:
    key: str


_SAFE_BUILTINS: dict[str, Any] = {
    "set": set, "frozenset": frozenset, "tuple": tuple, "list": list, "dict": dict, "complex": complex,
    "bytearray": bytearray, "int": int, "float": float, "bool": bool, "str": str,
}  # fmt: skip


class InertUnpickler(pickle.Unpickler):
    """Reads torch's data.pkl with stand-ins; refuses every global that is not on the allow-list."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.storages: dict[str, tuple[str, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "builtins" and name in _SAFE_BUILTINS:
            return _SAFE_BUILTINS[name]
        if module == "_codecs" and name == "encode":
            return _latin1
        if module == "torch._utils" and name in _TENSOR_REBUILDERS:
            return _tensor_builder(name)
        if module == "torch._tensor" and name == "_rebuild_from_type_v2":
            return _from_type_v2
        if module == "torch" and name == "Size":
            return tuple
        if module == "torch" and (name.endswith("Storage") or name in _DTYPES or name == "device"):
            return _Marker(f"torch.{name}") if name != "device" else _device
        if (module, name) in {("torch.serialization", "_get_layout"), ("torch.nn.parameter", "Parameter"),
                              ("torch", "Tensor")}:  # fmt: skip
            return _marker_factory(f"{module}.{name}")
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        # torch: ("storage", storage_type, key, location, numel) -> the bytes live in <prefix>/data/<key>
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(key, str) or not key.isdigit() or isinstance(numel, bool) or not isinstance(numel, int):
            raise pickle.UnpicklingError(f"malformed storage reference {pid!r:.80}")
        type_name = storage_type.qualname.rsplit(".", 1)[-1] if isinstance(storage_type, _Marker) else ""
        self.storages[key] = (type_name, numel)
        return _StorageRef(key)


def _device(*args: Any) -> _Marker:
    return _Marker(f"torch.device{args!r:.40}")


def _marker_factory(qualname: str) -> Any:
    def make(*_: Any, **__: Any) -> _Marker:
        return _Marker(qualname)

    return make
