"""Reading the Python pickles that dataset split files come as, without running their code.

Some standard split files are pickles downloaded from the internet (the MSD Last.fm lists
of Lee et al., ``*.cP`` / ``*.pkl``, written by Python 2's cPickle). The stock unpickler
calls whatever callable a pickle names, so loading an untrusted pickle runs its code.
:func:`load_restricted_pickle` uses a restricted :class:`pickle.Unpickler` whose
``find_class`` allows only:

- plain containers, strings and numbers (the pickle opcodes for list, dict, tuple, str,
  bytes, int, float, bool, None need no callable at all), plus ``set``, ``frozenset`` and
  ``collections.OrderedDict``;
- numeric numpy arrays, as numpy pickles them: ``numpy.core.multiarray._reconstruct``
  (and ``numpy._core...``) for the subtype ``numpy.ndarray`` only, ``numpy.dtype`` for
  boolean / integer / float / complex type codes only, ``_frombuffer`` (protocol 5) for
  such dtypes, and ``_codecs.encode`` with the
  latin-1 codec (how protocol 2 stores raw bytes). The result is checked again after
  loading: every array must have such a dtype and no fields.

Anything else (``os.system``, ``builtins.eval``, object arrays, arbitrary classes) is
refused with :class:`~lightning_tagging.data.errors.BuildError` before it is called.
Python 2 strings are decoded as latin-1 (``encoding="latin1"``, numpy's documented way of
reading Python 2 array pickles), so they arrive as ``str``.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BuildError

_NUMERIC_KINDS = "biufc"  # bool, signed and unsigned integer, float, complex


class _NdarrayName:
    """What the name ``numpy.ndarray`` resolves to: accepted by ``_safe_reconstruct``, not callable."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("refusing to call numpy.ndarray directly")


def _safe_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` for plain arrays: an empty array that BUILD then fills from bytes."""
    if subtype is not _NdarrayName:
        raise pickle.UnpicklingError(f"refusing to reconstruct an array of type {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _safe_dtype(code: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``numpy.dtype`` for numeric type codes only ('<f8', 'b1', 'i8', ...)."""
    if not isinstance(code, str):
        raise pickle.UnpicklingError(f"refusing a numpy dtype built from {type(code).__name__}")
    dtype = np.dtype(code)
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
        raise pickle.UnpicklingError(f"refusing the numpy dtype {code!r}: only numeric arrays are accepted")
    return np.dtype(code, bool(align), bool(copy))


def _safe_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's ``_frombuffer`` (protocol 5): a numeric array copied out of raw bytes."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
        raise pickle.UnpicklingError(f"refusing an array of dtype {dtype!r}")
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"refusing the array order {order!r}")
    return np.frombuffer(bytes(buffer), dtype=dtype).reshape(tuple(shape), order=order).copy()


def _safe_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for bytes: a str and the latin-1 codec."""
    if not isinstance(text, str) or codecs.lookup(str(encoding)).name != "iso8859-1":
        raise pickle.UnpicklingError("refusing _codecs.encode other than str → latin-1 bytes")
    return text.encode("latin-1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,  # the same, as Python 2 and protocols < 3 name them
    ("__builtin__", "frozenset"): frozenset,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy", "ndarray"): _NdarrayName,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("_codecs", "encode"): _safe_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the names in ``_ALLOWED`` (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only plain containers, strings, numbers and numeric arrays "
                "are accepted"
            ) from None


def _check_arrays(value: Any, depth: int = 0) -> None:
    """Every array in ``value`` must be numeric without fields (a second line of defence)."""
    if depth > 100:
        raise pickle.UnpicklingError("the pickle nests containers more than 100 deep")
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _NUMERIC_KINDS or value.dtype.fields is not None:
            raise pickle.UnpicklingError(f"refusing an array of dtype {value.dtype}")
    elif isinstance(value, dict):
        for item in value.items():
            _check_arrays(item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _check_arrays(item, depth + 1)


def loads_restricted(data: bytes, name: str = "pickle") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; ``name`` appears in errors."""
    try:
        value = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
        _check_arrays(value)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as error:
        raise BuildError(
            f"cannot read {name} safely: {error}. It should hold only lists, dicts, strings, numbers "
            "or numeric arrays; if it is the file the dataset distributes, it may be damaged"
        ) from error
    return value


def load_restricted_pickle(path: str | Path) -> Any:
    """Unpickle the file at ``path`` with :class:`RestrictedUnpickler`."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise BuildError(f"cannot read {path}: {error}") from error
    return loads_restricted(data, str(path))
