"""The detector protocol, and fitted state kept as named numpy arrays.

Every fitted piece of a model (the seasonal baseline, each detector) keeps what it learned as
plain numpy arrays, declared once per class in ``state_fields``: a name, a dtype and a shape
whose axes are numbers or names (``"n_series"`` last on every per-series array).
:class:`FittedState` derives everything else from that declaration: ``get_state`` /
``from_state`` (validated: a corrupt or foreign file raises :class:`DataError`, never
anything else), ``select`` (some series) and ``concat`` (series side by side). No pickle.

A :class:`Detector` turns feature rows of many series, shape ``(n_t, n_features,
n_series)``, into *evidence* of shape ``(n_t, n_series)``: finite, non-negative, 1 = at the
detector's own decision threshold, 0 for series it skips. Following scikit-learn's estimator
contract, ``__init__`` only stores parameters, ``fit(features, valid=None)`` returns ``self``,
and what was learned ends in ``_`` (``valid_``: the series the detector scores); having it is
what "fitted" means. The aggregator (:class:`~anomaly.models.scoring.AnomalyModel`) takes
the strongest evidence of its detectors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from anomaly.errors import DataError

#: The axis name of per-series arrays (always their last axis).
SERIES = "n_series"

_S = TypeVar("_S", bound="FittedState")


@dataclass(frozen=True)
class Field:
    """One array of a fitted state.

    Attributes
    ----------
    dtype : numpy dtype
        Stored dtype; a state array of another dtype of the same kind is accepted and cast.
    shape : tuple of (int or str)
        Fixed sizes, or axis names that must have one size across a state's arrays; a
        per-series array ends in :data:`SERIES`.
    finite : bool
        Whether every value must be finite.
    bounds : (float, float) or None
        Set on a constructor parameter stored as a 0-d array (attribute without ``_``): its
        value must lie within ``[low, high]``.
    """

    dtype: Any
    shape: tuple[int | str, ...]
    finite: bool = False
    bounds: tuple[float, float] | None = None

    @property
    def kind(self) -> str:
        return np.dtype(self.dtype).kind

    @property
    def per_series(self) -> bool:
        return bool(self.shape) and self.shape[-1] == SERIES

    @property
    def is_param(self) -> bool:
        return self.bounds is not None


def param(low: float, high: float) -> Field:
    """A float constructor parameter kept in the state, valid within ``[low, high]``."""
    return Field(np.float64, (), bounds=(low, high))


def check_state(
    state: Mapping[str, np.ndarray], prefix: str, fields: Mapping[str, Field]
) -> dict[str, np.ndarray]:
    """Return the ``prefix``-ed arrays of ``state`` (without prefix) after checking them.

    Raises
    ------
    DataError
        A key is missing, has the wrong dtype kind, rank or shape, named axes disagree, or
        an array that must be finite is not.
    """
    if not isinstance(state, Mapping):
        raise DataError(f"state must be a mapping of arrays, got {type(state).__name__}")
    out: dict[str, np.ndarray] = {}
    sizes: dict[str, tuple[int, str]] = {}  # axis name -> (size, the key that set it)
    for name, spec in fields.items():
        key = prefix + name
        if key not in state:
            raise DataError(f"state is missing `{key}`")
        arr = state[key]
        if not isinstance(arr, np.ndarray):
            raise DataError(f"state `{key}` must be a numpy array, got {type(arr).__name__}")
        if arr.dtype.kind != spec.kind:
            raise DataError(f"state `{key}` has dtype {arr.dtype}, expected kind {spec.kind!r}")
        if arr.ndim != len(spec.shape):
            raise DataError(f"state `{key}` has {arr.ndim} dimensions, expected {len(spec.shape)}")
        for axis, (dim, size) in enumerate(zip(spec.shape, arr.shape, strict=True)):
            if isinstance(dim, int):
                if size != dim:
                    raise DataError(
                        f"state `{key}` has shape {arr.shape}, expected {dim} on axis {axis}"
                    )
            elif dim not in sizes:
                sizes[dim] = (size, key)
            elif sizes[dim][0] != size:
                raise DataError(
                    f"state `{key}` has {size} on axis {axis} ({dim}), "
                    f"`{sizes[dim][1]}` has {sizes[dim][0]}"
                )
        if spec.finite and not np.all(np.isfinite(arr)):
            raise DataError(f"state `{key}` holds non-finite values")
        out[name] = arr
    return out


def scalar(arrays: Mapping[str, np.ndarray], name: str, low: float, high: float) -> float:
    """The value of a 0-d parameter array, checked to lie in ``[low, high]``."""
    arr = arrays[name]
    if arr.shape != ():
        raise DataError(f"state `{name}` must be a scalar, got shape {arr.shape}")
    value = float(arr)
    if not (np.isfinite(value) and low <= value <= high):
        raise DataError(f"state `{name}` must be within [{low}, {high}], got {value}")
    return value


def select_columns(
    arrays: Mapping[str, np.ndarray], fields: Mapping[str, Field], columns: np.ndarray
) -> dict[str, np.ndarray]:
    """Restrict every per-series array to ``columns`` (indices or boolean mask)."""
    cols = np.asarray(columns)
    return {
        name: (
            np.take(arrays[name], _as_indices(cols, arrays, fields), axis=-1)
            if spec.per_series
            else arrays[name]
        )
        for name, spec in fields.items()
    }


def _as_indices(
    cols: np.ndarray, arrays: Mapping[str, np.ndarray], fields: Mapping[str, Field]
) -> np.ndarray:
    n = next(arrays[k].shape[-1] for k, f in fields.items() if f.per_series)
    if cols.dtype == bool:
        if cols.shape != (n,):
            raise ValueError(f"`columns` mask must have shape ({n},), got {cols.shape}")
        return np.flatnonzero(cols)
    idx = cols.astype(np.int64).ravel()
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"`columns` out of range for {n} series")
    return idx


def concat_columns(
    parts: Sequence[Mapping[str, np.ndarray]], fields: Mapping[str, Field]
) -> dict[str, np.ndarray]:
    """Put states side by side; non-series arrays must agree exactly."""
    out: dict[str, np.ndarray] = {}
    for name, spec in fields.items():
        if spec.per_series:
            out[name] = np.concatenate([p[name] for p in parts], axis=-1)
        else:
            first = parts[0][name]
            for p in parts[1:]:
                if p[name].shape != first.shape or not np.array_equal(p[name], first):
                    raise ValueError(f"cannot concat models whose `{name}` differ")
            out[name] = first
    return out


class FittedState:
    """Fitted state as the named arrays of ``state_fields`` (see the module docstring).

    A parameter field ``name`` is the attribute ``name``; any other field is the learned
    attribute ``name_``.
    """

    state_fields: ClassVar[Mapping[str, Field]]

    def get_state(self, copy: bool = True) -> dict[str, np.ndarray]:
        """All fitted state as numpy arrays; per-series arrays have the series last.

        ``copy=False`` returns the object's own arrays (for saving or combining them without
        another copy, tens of MB of trees for hundreds of series)."""
        self._check_fitted()
        out: dict[str, np.ndarray] = {}
        for name, spec in self.state_fields.items():
            if spec.is_param:
                out[name] = np.array(getattr(self, name), dtype=spec.dtype)
            else:
                arr = getattr(self, name + "_")
                out[name] = arr.copy() if copy else arr
        return out

    @classmethod
    def from_state(cls: type[_S], state: Mapping[str, np.ndarray], prefix: str = "") -> _S:
        """Rebuild a fitted object from :meth:`get_state` (arrays already of the stored
        dtypes are used as they are, not copied).

        Raises
        ------
        DataError
            Missing keys, wrong dtypes or shapes, values out of range.
        """
        arrays = check_state(state, prefix, cls.state_fields)
        params = {
            name: scalar(arrays, name, *spec.bounds)
            for name, spec in cls.state_fields.items()
            if spec.bounds is not None
        }
        cls._check_arrays(arrays, params, prefix)
        make: Callable[..., _S] = cls  # the parameters are the subclass's
        obj = make(**params)
        for name, spec in cls.state_fields.items():
            if not spec.is_param:
                setattr(obj, name + "_", arrays[name].astype(spec.dtype, copy=False))
        return obj

    @classmethod
    def _check_arrays(
        cls, arrays: Mapping[str, np.ndarray], params: Mapping[str, float], prefix: str
    ) -> None:
        """Checks of a loaded state beyond dtypes and shapes (raise :class:`DataError`)."""

    def select(self: _S, columns: np.ndarray) -> _S:
        """The fitted object restricted to ``columns`` (indices or boolean mask), in order."""
        state = select_columns(self.get_state(copy=False), self.state_fields, columns)
        return type(self).from_state(state)

    @classmethod
    def concat(cls: type[_S], parts: Sequence[_S]) -> _S:
        """Fitted objects side by side, series in order; their parameters must agree."""
        if not parts:
            raise ValueError("`parts` must not be empty")
        states = [p.get_state(copy=False) for p in parts]
        cls._align_states(states)
        return cls.from_state(concat_columns(states, cls.state_fields))

    @classmethod
    def _align_states(cls, states: list[dict[str, np.ndarray]]) -> None:
        """Make the states' non-series axes agree before :meth:`concat` (replacing entries)."""

    def _check_fitted(self) -> None:
        learned = next(n for n, f in self.state_fields.items() if not f.is_param)
        if not hasattr(self, learned + "_"):
            raise AttributeError(f"{type(self).__name__} is not fitted; call fit() first")


_D = TypeVar("_D", bound="Detector")


class Detector(FittedState, ABC):
    """Per-series evidence of anomalies from feature rows (see the module docstring).

    Learned attributes common to every detector: ``valid_`` (bool, shape (n_series,)), the
    series it scores.
    """

    valid_: np.ndarray

    @abstractmethod
    def fit(self: _D, features: np.ndarray, valid: np.ndarray | None = None) -> _D:
        """Learn from training rows.

        Parameters
        ----------
        features : ndarray of shape (n_t, n_features, n_series)
            NaN where a feature is undefined.
        valid : ndarray of bool, shape (n_series,), optional
            Series to skip (left unfitted, evidence 0); default none.

        Returns
        -------
        self
        """

    @abstractmethod
    def evidence(self, features: np.ndarray) -> np.ndarray:
        """Evidence of every row; 1 = at the decision threshold.

        Parameters
        ----------
        features : ndarray of shape (n_t, n_features, n_series)

        Returns
        -------
        ndarray of shape (n_t, n_series)
            Non-negative; 0 for series the detector skips.
        """

    @abstractmethod
    def check_n_features(self, n_features: int) -> None:
        """Raise :class:`DataError` if the fitted detector cannot score rows of
        ``n_features`` features (a state saved for other features)."""

    def _check_scoring(self, features: np.ndarray) -> None:
        """Fitted, and ``features`` describes the series it was fitted on."""
        self._check_fitted()
        check_features(features)
        n_s, fitted = features.shape[2], self.valid_.shape[0]
        if n_s != fitted:
            raise ValueError(f"`features` has {n_s} series, the model was fitted on {fitted}")


def check_features(features: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``features`` has shape (n_t, n_features, n_series)."""
    if np.ndim(features) != 3:
        raise ValueError(
            f"`features` must be 3-D (n_t, n_features, n_series), got {np.shape(features)}"
        )


def valid_series(valid: np.ndarray | None, n_series: int) -> np.ndarray:
    """``valid`` as a fresh bool array of shape (n_series,); all True when None."""
    if valid is None:
        return np.ones(n_series, dtype=bool)
    ok = np.array(valid, dtype=bool)
    if ok.shape != (n_series,):
        raise ValueError(f"`valid` must have shape ({n_series},), got {ok.shape}")
    return ok
