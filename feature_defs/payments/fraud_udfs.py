"""On-demand fraud features, computed when a transaction arrives (feature_defs/payments/txn_risk.yaml).

skewless calls each function with a pandas DataFrame: one Arrow-backed column per request field
and per input feature, nulls as ``pd.NA``. It returns a DataFrame with exactly the declared
features, one row per input row, in the same order. The same code runs in the training join and
in the online client, so the two cannot disagree.
"""

from __future__ import annotations

import pandas as pd


def txn_risk(df: pd.DataFrame) -> pd.DataFrame:
    """How unusual a transaction's amount is for its merchant, and when it happens.

    * ``amount_zscore``: the amount against the merchant's 7-day average, in units of its 30-day
      standard deviation; null without history (or with a zero deviation).
    * ``is_large_amount``: above everything the merchant took in the last 7 days; null without history.
    * ``hour_of_day``: the UTC hour of the request (the spine's timestamp in training).
    """
    spread = df["amount_stddev_30d"]
    usable = spread.where(spread > 0)  # a zero deviation says nothing: null, not infinity
    return pd.DataFrame(
        {
            "amount_zscore": (df["amount"] - df["amount_avg_7d"]) / usable,
            "is_large_amount": df["amount"] > df["amount_max_7d"],
            "hour_of_day": df["request_ts"].dt.hour,
        }
    )
