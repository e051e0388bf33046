"""Feature trees of the online store tests: every dtype, int and string keys, a composite key,
and one feature name (``score``) used by two views."""

from __future__ import annotations

TREE = {
    "entities.yaml": """
        entity:
          name: merchant
          join_keys: {merchant_id: string}
        ---
        entity:
          name: customer
          join_keys: {customer_id: int64}
        ---
        entity:
          name: account
          join_keys: {customer_id: int64, region: string}
    """,
    "sources.yaml": """
        source:
          name: merchants_raw
          path: merchants
          format: parquet
          timestamp: ts
          columns: {merchant_id: string, ts: timestamp, n: int64, score: float64, label: string,
                    active: bool}
        ---
        source:
          name: customers_raw
          path: customers
          format: parquet
          timestamp: ts
          columns: {customer_id: int64, ts: timestamp, total: int64, score: float64}
        ---
        source:
          name: accounts_raw
          path: accounts
          format: parquet
          timestamp: ts
          columns: {customer_id: int64, region: string, ts: timestamp, flag: bool, note: string}
    """,
    "views.yaml": """
        view:
          name: merchant_profile
          version: 1
          kind: snapshot
          entity: merchant
          source: merchants_raw
          ttl: 1d
          features:
            - {name: n, dtype: int64}
            - {name: score, dtype: float64}
            - {name: label, dtype: string}
            - {name: active, dtype: bool}
        ---
        view:
          name: customer_stats
          version: 2
          kind: snapshot
          entity: customer
          source: customers_raw
          ttl: 2d
          features:
            - {name: total, dtype: int64}
            - {name: score, dtype: float64}
        ---
        view:
          name: account_flags
          version: 1
          kind: snapshot
          entity: account
          source: accounts_raw
          ttl: 1h
          features:
            - {name: flag, dtype: bool}
            - {name: note, dtype: string}
        ---
        service:
          name: fraud
          features: [merchant_profile:n, customer_stats:total, account_flags:flag]
    """,
}
