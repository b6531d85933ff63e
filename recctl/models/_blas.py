"""In-place float32 BLAS/LAPACK calls on sub-blocks of a Fortran-ordered matrix.

``scipy.linalg.blas``/``lapack`` wrappers copy any operand that is not contiguous, and a
sub-block of a large matrix never is: a dense inversion written as block operations through them
copies (and page-faults in) hundreds of MB per call. The same routines are reachable without
copies through the function pointers scipy publishes for Cython (``scipy.linalg.cython_blas`` /
``cython_lapack``, public API), called here through :mod:`ctypes` (which releases the GIL) with
the block's address and the parent matrix's leading dimension.

Every operand is a float32 view whose rows are adjacent in memory (``strides[0] == 4``), i.e.
a block of a Fortran-ordered array (or the transpose of a C-ordered one). The routines follow
the reference BLAS/LAPACK argument conventions; only the few EASE needs are wrapped.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg.cython_blas as _cython_blas
import scipy.linalg.cython_lapack as _cython_lapack

__all__ = ["lauum", "potrf", "syrk", "trmm", "trsm", "trtri"]

_P = ctypes.c_void_p
_pointer_of = ctypes.pythonapi.PyCapsule_GetPointer
_pointer_of.restype = ctypes.c_void_p
_pointer_of.argtypes = [ctypes.py_object, ctypes.c_char_p]
_name_of = ctypes.pythonapi.PyCapsule_GetName
_name_of.restype = ctypes.c_char_p
_name_of.argtypes = [ctypes.py_object]


def _routine(module: Any, name: str, n_args: int) -> Callable[..., None]:
    capsule = module.__pyx_capi__[name]
    address = _pointer_of(capsule, _name_of(capsule))
    return ctypes.CFUNCTYPE(None, *([_P] * n_args))(address)


_strsm = _routine(_cython_blas, "strsm", 11)
_strmm = _routine(_cython_blas, "strmm", 11)
_ssyrk = _routine(_cython_blas, "ssyrk", 10)
_spotrf = _routine(_cython_lapack, "spotrf", 5)
_strtri = _routine(_cython_lapack, "strtri", 6)
_slauum = _routine(_cython_lapack, "slauum", 5)


def _block(a: np.ndarray) -> tuple[int, ctypes.c_int]:
    """Address and leading dimension of a float32 block whose rows are adjacent."""
    if a.dtype != np.float32 or a.ndim != 2:
        raise TypeError(f"expected a 2-d float32 block, got {a.dtype} with {a.ndim} dimension(s)")
    rows, cols = a.shape
    if rows > 1 and a.strides[0] != 4:
        raise ValueError("the block's rows must be adjacent in memory (a block of a Fortran-ordered matrix)")
    ld = a.strides[1] // 4 if cols > 1 else rows
    if ld < max(1, rows):
        raise ValueError(f"leading dimension {ld} is smaller than the block's {rows} rows")
    if not a.flags.writeable:
        raise ValueError("the block must be writeable (the routines work in place)")
    return a.ctypes.data, ctypes.c_int(max(1, ld))


def _c(flag: str) -> ctypes.c_char_p:
    return ctypes.c_char_p(flag.encode("ascii"))


def _i(value: int) -> ctypes.c_int:
    return ctypes.c_int(value)


def _f(value: float) -> ctypes.c_float:
    return ctypes.c_float(value)


def _ref(x: Any) -> Any:
    return ctypes.byref(x)


def _triangular(
    routine: Callable[..., None], side: str, trans: str, alpha: float, a: np.ndarray, b: np.ndarray
) -> None:
    """``strsm``/``strmm`` (same arguments) with ``a`` lower triangular, non-unit, on ``b`` in place."""
    m, n = b.shape
    pa, lda = _block(a)
    pb, ldb = _block(b)
    args = (_c(side), _c("L"), _c(trans), _c("N"), _ref(_i(m)), _ref(_i(n)), _ref(_f(alpha)))
    routine(*args, pa, _ref(lda), pb, _ref(ldb))


def trsm(side: str, trans: str, alpha: float, a: np.ndarray, b: np.ndarray) -> None:
    """``b ← alpha · op(a)⁻¹ b`` (side ``"L"``) or ``alpha · b op(a)⁻¹`` (``"R"``); ``a`` lower, non-unit."""
    _triangular(_strsm, side, trans, alpha, a, b)


def trmm(side: str, trans: str, alpha: float, a: np.ndarray, b: np.ndarray) -> None:
    """``b ← alpha · op(a) b`` (side ``"L"``) or ``alpha · b op(a)`` (``"R"``); ``a`` lower, non-unit."""
    _triangular(_strmm, side, trans, alpha, a, b)


def syrk(trans: str, alpha: float, a: np.ndarray, beta: float, c: np.ndarray) -> None:
    """Lower triangle of ``c ← alpha · a aᵀ + beta · c`` (trans ``"N"``) or ``alpha · aᵀ a + beta · c`` (``"T"``)."""
    n = c.shape[0]
    k = a.shape[1] if trans == "N" else a.shape[0]
    pa, lda = _block(a)
    pc, ldc = _block(c)
    _ssyrk(_c("L"), _c(trans), _ref(_i(n)), _ref(_i(k)), _ref(_f(alpha)), pa, _ref(lda), _ref(_f(beta)), pc, _ref(ldc))


def _lapack(routine: Callable[..., None], flags: tuple[str, ...], a: np.ndarray) -> int:
    pa, lda = _block(a)
    info = ctypes.c_int(0)
    routine(*(_c(f) for f in flags), _ref(_i(a.shape[0])), pa, _ref(lda), _ref(info))
    return int(info.value)


def potrf(a: np.ndarray) -> int:
    """Cholesky factor of the lower triangle of ``a`` in place (``a = L Lᵀ``); LAPACK's ``info``."""
    return _lapack(_spotrf, ("L",), a)


def trtri(a: np.ndarray) -> int:
    """Inverse of the lower-triangular (non-unit) ``a`` in place; LAPACK's ``info``."""
    return _lapack(_strtri, ("L", "N"), a)


def lauum(a: np.ndarray) -> int:
    """``Lᵀ L`` of the lower-triangular ``a`` into its lower triangle, in place; LAPACK's ``info``."""
    return _lapack(_slauum, ("L",), a)
