"""The real UCI Online Retail log loads in its original form through configuration alone."""

from __future__ import annotations

import pytest

from recsys.config import load_config
from recsys.ingest import load_events
from recsys.schema import EventType
from tests.conftest import ROOT, shared_file

pytestmark = pytest.mark.slow


def test_online_retail_loads_with_every_row_accounted_and_cancellations_as_returns(
    tmp_path,
) -> None:
    shared_file("online-retail/online_retail.parquet")
    config = load_config(ROOT / "data" / "configs" / "online-retail.toml")
    log = load_events(config, rejects_dir=tmp_path)
    report = log.report
    assert report.rows_read == 370_931
    assert report.accepted + report.rejected_total == report.rows_read
    # Guest purchases have no customer id; postage and fees are not products.
    assert report.rejected == {"missing_user": 98_056, "excluded_item": 1_342, "duplicate": 2_814}
    assert report.accepted == 268_719
    assert report.users == 3_648
    returns = log.frame[log.frame["event"] == EventType.RETURN]
    assert len(returns) == report.returns == 6_063
    assert returns["session"].str.startswith("C").all()
    assert (log.frame["quantity"] >= 0).all()
    assert log.frame["user"].dtype.kind == "i"  # float ids in the file became whole numbers
    assert (tmp_path / "events.rejects.csv").exists()


def test_taobao_browse_log_loads_with_counts_by_event_type(tmp_path) -> None:
    path = shared_file("taobao-userbehavior-sample/taobao_userbehavior_sample.parquet")
    from recsys.config import config_from_dict

    config = config_from_dict(
        {
            "timezone": "Asia/Shanghai",
            "events": {
                "path": str(path),
                "event_types": {
                    "pv": "view",
                    "cart": "cart",
                    "fav": "favourite",
                    "buy": "purchase",
                },
                "columns": {
                    "user": "user_id",
                    "item": "item_id",
                    "category": "category_id",
                    "event": "behavior_type",
                    "timestamp": "timestamp",
                },
            },
        }
    )
    report = load_events(config, rejects_dir=tmp_path).report
    assert report.rows_read == 63_735 == report.accepted + report.rejected_total
    assert report.by_event == {
        "view": 57_282,
        "cart": 3_365,
        "favourite": 1_707,
        "purchase": 1_381,
        "return": 0,
    }
