"""Training to a wall-time budget: measure what a step and an evaluation cost, fit the steps to the time.

The learning-rate schedule (warm-up, cosine, low-lr tail) is laid over the fitted step count, so a
run given 12 minutes anneals in its last minutes instead of being cut off at a high learning rate.
The fit is redone at every log record from the rates measured so far, so a machine that slows down
(or speeds up) moves the end of the schedule with it; the first fit comes after a short probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Budget:
    """The budget and what has been measured against it; times are seconds of the run's clock."""

    seconds: float  # the whole budget, counted from the start of training (set-up included)
    limit_steps: int  # train.steps: a limit too; whichever comes first ends the run
    eval_every: int
    eval_minutes: float
    batch_size: int
    val_size: int
    # Steps the rate is not measured on (DataLoader workers starting), then steps it is first measured on.
    settle_steps: int = 5
    probe_steps: int = 20
    step_seconds: float = 0.0  # per training step: drawing a batch and stepping, evaluations excluded
    eval_seconds: float = 0.0  # one validation and the checkpoints that follow it (measured once seen)
    _measured_steps: int = 0
    _measured_time: float = 0.0

    def add_step(self, seconds: float, step_in_run: int) -> None:
        """Count one training step's time (the first `settle_steps` of a run are left out)."""
        if step_in_run > self.settle_steps:
            self._measured_steps += 1
            self._measured_time += seconds
            self.step_seconds = self._measured_time / self._measured_steps

    def add_eval(self, seconds: float) -> None:
        # The latest: a validation costs the same each time, and a checkpoint grows only with the model.
        self.eval_seconds = seconds

    def carry_over(self, step_seconds: float, eval_seconds: float) -> None:
        """Start from the rates a resumed run measured before it stopped, so it refits at once (a
        resume given more minutes must not end at the step its old budget planned)."""
        if step_seconds > 0:
            self._measured_steps, self._measured_time = self.probe_steps, step_seconds * self.probe_steps
            self.step_seconds, self.eval_seconds = step_seconds, eval_seconds

    @property
    def probed(self) -> bool:
        return self._measured_steps >= self.probe_steps

    def eval_estimate(self) -> float:
        """One validation's cost: measured once one has run, before that a forward pass over the
        validation set at a third of a training step's cost per image (no backward, no optimizer)."""
        if self.eval_seconds > 0:
            return self.eval_seconds
        return self.val_size * self.step_seconds / max(1, self.batch_size) / 3

    def fit(self, step: int, elapsed: float) -> int:
        """The last step of the run: what fits in the time left after the final validation and
        checkpoint, never before `step` (time already up ends the run at once)."""
        if not self.probed:
            return self.limit_steps
        evaluation = self.eval_estimate()
        left = self.seconds - elapsed - evaluation
        if self.eval_minutes > 0:
            left -= evaluation * left / (self.eval_minutes * 60)  # validations due by the clock
        per_step = self.step_seconds + evaluation / self.eval_every
        steps_left = max(0, math.floor(left / per_step)) if per_step > 0 else 0
        return max(step, min(self.limit_steps, step + steps_left))
