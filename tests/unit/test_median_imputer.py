"""MedianImputer equals scikit-learn's SimpleImputer(median, keep_empty_features) in linear time."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.impute import SimpleImputer

from marketing.median_imputer import MedianImputer


def _reference(x_fit: np.ndarray, x_apply: np.ndarray) -> np.ndarray:
    return SimpleImputer(strategy="median", keep_empty_features=True).fit(x_fit).transform(x_apply)


@pytest.mark.parametrize("n_rows", [1, 2, 7, 1000])
def test_equals_simple_imputer_with_missing_values_and_an_empty_column(n_rows):
    rng = np.random.default_rng(n_rows)
    x = rng.lognormal(size=(n_rows, 5)).round(1)  # rounding makes ties
    x[rng.random(x.shape) < 0.3] = np.nan
    x[:, 3] = np.nan  # all missing: kept and filled with 0, as SimpleImputer does
    later = rng.lognormal(size=(50, 5))
    later[rng.random(later.shape) < 0.5] = np.nan
    fitted = MedianImputer().fit(x)
    np.testing.assert_array_equal(fitted.transform(x), _reference(x, x))
    np.testing.assert_array_equal(fitted.transform(later), _reference(x, later))
    assert fitted.statistics_[3] == 0.0


def test_does_not_modify_its_input_and_keeps_complete_columns():
    x = np.array([[1.0, np.nan], [3.0, 4.0], [2.0, 8.0]])
    before = x.copy()
    out = MedianImputer().fit(x).transform(x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(out, [[1.0, 6.0], [3.0, 4.0], [2.0, 8.0]])


def test_rejects_a_different_width_and_use_before_fit():
    with pytest.raises(NotFittedError):
        MedianImputer().transform(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="3 columns.*fitted on 2"):
        MedianImputer().fit(np.zeros((2, 2))).transform(np.zeros((2, 3)))


def test_a_column_without_values_warns_nothing(monkeypatch):
    """No "All-NaN slice" RuntimeWarning, and no silencing of it through the process-wide
    warning filters, which is not thread-safe (user_predictions fits two pipelines in threads
    at once, so a silenced warning could leak from the other thread's fit)."""
    x = np.array([[np.nan, 1.0], [np.nan, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        def swap_filters(*args, **kwargs):
            raise AssertionError("fit swapped the process-wide warning filters")

        monkeypatch.setattr(warnings, "catch_warnings", swap_filters)
        fitted = MedianImputer().fit(x)
        empty = MedianImputer().fit(np.zeros((0, 2)))
    np.testing.assert_array_equal(fitted.statistics_, [0.0, 2.0])
    np.testing.assert_array_equal(empty.statistics_, [0.0, 0.0])
