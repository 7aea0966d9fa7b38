"""Median imputation in linear time.

scikit-learn's ``SimpleImputer(strategy="median")`` computes medians on a masked array, which
sorts every column (``numpy.ma.median``): 10 s of the 33 s scoring step at a million users.
:class:`MedianImputer` gives the same statistics with ``numpy.nanmedian`` (a selection, not
a sort) and the same ``keep_empty_features=True`` behaviour (an all-missing column is kept and
filled with 0).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted


class MedianImputer(TransformerMixin, BaseEstimator):
    """Replace NaN by the column median seen in ``fit`` (0 for a column with no values).

    Attributes
    ----------
    statistics_ : numpy.ndarray
        The fill value of every column.
    n_features_in_ : int
    """

    def fit(self, X, y=None) -> MedianImputer:  # noqa: N803 (scikit-learn's signature)
        x = np.asarray(X, dtype=np.float64)
        # columns without a value are left out of nanmedian instead of silencing its "All-NaN
        # slice" warning: warnings.catch_warnings() swaps process-wide filters, which is not
        # safe while another thread fits (user_predictions fits two models side by side)
        medians = np.full(x.shape[1], np.nan)
        has_value = ~np.isnan(x).all(axis=0) if len(x) else np.zeros(x.shape[1], dtype=bool)
        if has_value.any():
            medians[has_value] = np.nanmedian(x[:, has_value], axis=0)
        self.statistics_ = np.where(np.isnan(medians), 0.0, medians)
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, X) -> np.ndarray:  # noqa: N803
        check_is_fitted(self, "statistics_")
        x = np.array(X, dtype=np.float64, copy=True)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {x.shape[1]} columns but MedianImputer was fitted on {self.n_features_in_}"
            )
        rows, cols = np.nonzero(np.isnan(x))
        x[rows, cols] = self.statistics_[cols]
        return x
