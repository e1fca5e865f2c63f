"""The dashboards' human/machine split and detection time: answering-machine detection events count
per AnsweredBy value and fill the detection-time histogram, once however often they are delivered."""
import time
import uuid

from telephony.gateway import events as gw
from telephony.metrics import selectors
from telephony.metrics.services import record_call_event


def test_detection_results_give_the_human_machine_split_and_the_detection_time():
    schema = "m_" + uuid.uuid4().hex[:12]
    decisions = [("human", 2400), ("human", 2900), ("machine_end_beep", 7100), ("fax", 1200)]
    for answered_by, ms in decisions:
        sid = f"CA{uuid.uuid4().hex}"
        amd = gw.make_event(sid, gw.AMD, ts=time.time(), answered_by=answered_by, amd_ms=ms)
        assert record_call_event(schema, amd, {"sid": sid}) is True
        assert record_call_event(schema, amd, {"sid": sid}) is False  # delivered twice, counted once

    series = selectors.tenant_series(schema, "1h")
    assert series["totals"]["answered_by"] == {"human": 2, "machine_end_beep": 1, "fax": 1}
    detection = series["histograms"]["amd_ms"]
    assert detection["count"] == 4 and 2400 <= detection["p50"] <= 3000
