"""The typed message a trial's worker sends its driver, carried in Tune's result dict.

A worker reports with `ray.tune.report(message.to_result())`; the driver's callback reads it back
with `TrialMessage.from_result(result)`. The message travels as a plain dict under `RESULT_KEY`
(Tune's result dict holds JSON-able values); an epoch message also puts its record's metrics at
the top level, where Tune's schedulers (ASHA) look for them.

Kinds, in the order a trial sends them:

    start   before anything can fail: this attempt's hardware and package versions (`hw`)
    replay  epochs restored from a checkpoint, which a driver may not have stored (`records`)
    epoch   one finished epoch (`records` holds its one record)
    final   fit returned: `status` (completed | failed) and `error`
    held    the run directory is locked by another process (`error` names it): the trial did not
            start, and the driver runs it again later
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RESULT_KEY = "tort"

MessageKind = Literal["start", "replay", "epoch", "final", "held"]


class TrialMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: MessageKind
    hw: dict[str, Any] = Field(default_factory=dict, description="hw.* and version.* of this attempt")
    info: dict[str, Any] = Field(default_factory=dict, description="train_size, test_size, num_classes, parameters, "
                                                                   "timing (see driver.TIMING_KEYS)")
    records: list[dict[str, Any]] = Field(default_factory=list, description="epoch records (replay, epoch)")
    status: str | None = Field(None, description="final: completed | failed")
    error: str | None = Field(None, description="final: why it failed; held: who holds the run directory")

    def to_result(self) -> dict[str, Any]:
        out: dict[str, Any] = {RESULT_KEY: self.model_dump(mode="json")}
        if self.kind == "epoch" and self.records:
            out.update(self.records[-1])
        return out

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> TrialMessage | None:
        """The message in a Tune result, or None for a result tort did not send."""
        raw = result.get(RESULT_KEY)
        return cls.model_validate(raw) if isinstance(raw, dict) else None
