"""The worker → driver message: what a trial sends survives Tune's result dict, and a malformed
one is refused rather than half-read."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tort_core.sweep.messages import RESULT_KEY, TrialMessage


def test_an_epoch_message_round_trips_through_a_json_result_and_exposes_its_metrics():
    record = {"epoch": 3, "loss": 0.25, "test_top1": 71.5}
    msg = TrialMessage(kind="epoch", hw={"hw.host": "n1"}, info={"train_size": 48}, records=[record])
    result = json.loads(json.dumps(msg.to_result()))  # what crosses the process boundary
    assert result["epoch"] == 3 and result["test_top1"] == 71.5  # where ASHA looks
    back = TrialMessage.from_result({**result, "time_total_s": 1.0, "training_iteration": 3})
    assert back == msg and back.records == [record]


def test_non_epoch_messages_keep_their_fields_to_themselves():
    final = TrialMessage(kind="final", status="failed", error="non-finite loss")
    result = final.to_result()
    assert set(result) == {RESULT_KEY}
    assert TrialMessage.from_result(result).error == "non-finite loss"


def test_results_tort_did_not_send_are_ignored_and_malformed_ones_refused():
    assert TrialMessage.from_result({"loss": 1.0}) is None
    with pytest.raises(ValidationError):
        TrialMessage.from_result({RESULT_KEY: {"kind": "epoc"}})
    with pytest.raises(ValidationError):
        TrialMessage.from_result({RESULT_KEY: {"kind": "epoch", "surprise": 1}})
