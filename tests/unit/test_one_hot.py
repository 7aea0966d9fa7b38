"""CategoricalOneHotEncoder equals scikit-learn's OneHotEncoder(handle_unknown="ignore")."""

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import OneHotEncoder

from marketing.one_hot import CategoricalOneHotEncoder


def _frame(rng, n, values):
    return pd.DataFrame({
        name: pd.Categorical(rng.choice(choices, size=n), categories=[*choices, "declared"])
        for name, choices in values.items()
    })


def test_matches_sklearn_one_hot_encoder_with_unseen_values():
    rng = np.random.default_rng(3)
    fit = _frame(rng, 400, {"country": ["US", "DE", "b", "A"], "campaign_id": ["3", "10"]})
    # scoring rows: an unseen country, categories in another order
    score = pd.DataFrame({
        "country": pd.Categorical(["FR", "US", "A", "b", "FR"],
                                  categories=["FR", "b", "US", "A"]),
        "campaign_id": pd.Categorical(["10", "3", "3", "99", "10"]),
    })
    ours = CategoricalOneHotEncoder().fit(fit)
    theirs = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(fit.astype(object))
    for left, right in zip(ours.categories_, theirs.categories_, strict=True):
        assert left.tolist() == right.tolist()  # sorted, "declared" (never seen) left out
    assert list(ours.feature_names_in_) == list(theirs.feature_names_in_)
    for rows in (fit, score):
        np.testing.assert_array_equal(ours.transform(rows), theirs.transform(rows.astype(object)))
    assert ours.transform(score)[0].sum() == 1.0  # the unseen country: only the campaign column
    assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())


def test_plain_columns_and_empty_frames():
    fit = pd.DataFrame({"channel": ["sms", "email", "sms"]})
    encoder = CategoricalOneHotEncoder().fit(fit)
    np.testing.assert_array_equal(encoder.transform(fit), [[0, 1], [1, 0], [0, 1]])
    assert encoder.transform(fit.iloc[:0]).shape == (0, 2)


def test_missing_values_and_columns_are_errors():
    with pytest.raises(ValueError, match="'channel' has missing values"):
        CategoricalOneHotEncoder().fit(pd.DataFrame({"channel": pd.Categorical(["sms", None])}))
    encoder = CategoricalOneHotEncoder().fit(pd.DataFrame({"channel": ["sms"]}))
    with pytest.raises(ValueError, match=r"missing columns \['channel'\]"):
        encoder.transform(pd.DataFrame({"country": ["US"]}))
