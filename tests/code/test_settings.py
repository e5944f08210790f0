import re

import pytest

from nbmlops.errors import ConfigError
from nbmlops.settings import DataSettings


def test_defaults_and_types():
    s = DataSettings.from_params(target="y", drop_columns=["id"])
    assert s.drop_columns == ("id",) and s.sample_frac == 1.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target": "y", "sample_fraction": 0.1}, "unknown data parameter(s) ['sample_fraction']"),
        ({"target": "y", "sample_frac": 0}, "sample_frac"),
        ({"target": "y", "sample_frac": 1.5}, "sample_frac"),
        ({"target": "y", "reference_periods": 1, "holdout_periods": 1}, "reference_periods"),
        ({"target": ""}, "target"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        DataSettings.from_params(**params)
