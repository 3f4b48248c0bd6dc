"""The strategy registry (selector.strategies.registry): parameters are type-checked by ``get_strategy`` and
by the ``Selector`` at construction, before any work. The command line's ``--param`` check is in
tests/test_bad_input.py; every registered strategy's contract is in test_contract.py."""
from __future__ import annotations

import numpy as np
import pytest


def test_strategy_parameters_type_checked_in_the_api():
    from selector.strategies import get_strategy

    with pytest.raises(ValueError, match="k_nn must be a whole number"):
        get_strategy("typiclust", k_nn="abc")
    with pytest.raises(ValueError, match="explore must be a finite number"):
        get_strategy("balanced", explore=float("nan"))
    assert get_strategy("balanced", explore=0, k_nn=np.int64(10)).k_nn == 10  # ints are numbers too
    from selector.api import Selector

    with pytest.raises(ValueError, match="k_nn must be a whole number, got 'abc'"):  # at construction, before fit
        Selector(strategy="typiclust", strategy_params={"k_nn": "abc"})
