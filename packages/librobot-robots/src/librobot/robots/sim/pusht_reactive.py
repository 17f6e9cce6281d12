"""A state-feedback PushT expert: each action is a function of what the step observes (the pusher's
position and the block's pose), with no plan carried from one step to the next.

``PushTExpert`` executes a plan (travel, settle, push, retreat) open loop, so the same state can be
followed by different actions depending on how far into its plan it is: a policy that sees only
the state cannot tell, and imitating it was measured to fail even with the block's pose given
(benchmarks/results/pixels_pusht.md). This expert scores the same simulated pushes, adds the
distance the pusher has to travel to each push's start, and acts on the best one: push when the
pusher is at its start, else move towards it around the block. A push in progress stays the best
because the pusher is already at its contact, which is what keeps the behaviour steady without
memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from librobot.robots.sim.pusht import AGENT_RADIUS, PushTExpert

TRAVEL_COST = 0.6  # pose-error units per pixel of travel to a push's start (keeps a push going)
AT_START = 6.0  # px: close enough to the start to push
APPROACH = 20.0  # px: the pusher comes in along the contact normal from this far out
MAX_STEP = 25.0  # px: the longest move one action asks for


class PushTReactiveExpert(PushTExpert):
    """See the module docstring."""

    def __init__(self, env: Any, *, spacing: float = 22.0, travel_cost: float = TRAVEL_COST) -> None:
        super().__init__(env, spacing=spacing)
        self.travel_cost = float(travel_cost)
        self._memo: tuple[tuple[float, ...], list] | None = None

    def reset(self) -> None:
        self._memo = None

    def _candidates(self) -> list:
        """The pushes for the block's current pose (simulated once per pose: while the pusher
        travels the block rests, and every step would ask again)."""
        pos, angle = self._pose()
        key = (round(float(pos[0]), 3), round(float(pos[1]), 3), round(angle, 5))
        if self._memo is None or self._memo[0] != key:
            self._memo = (key, self._pushes())
        return self._memo[1]

    def act(self, observation: Any) -> np.ndarray:
        here = np.array(self.env.inner.agent.position, dtype=np.float64)
        pushes = self._candidates()
        if not pushes:  # nothing improves the pose from here: step back from the block
            return (here + (here - self._pose()[0]) * 0.2).astype(np.float32)
        _, start, normal, targets = min(pushes, key=lambda p: p[0] + self.travel_cost * float(np.hypot(*(p[1] - here))))
        if np.hypot(*(start - here)) < AT_START:
            return np.asarray(targets[0], dtype=np.float32)  # in place: push
        approach = start + normal * APPROACH
        on_normal = float(np.dot(here - start, normal))  # how far out along the normal the pusher is
        lateral = float(np.hypot(*((here - start) - on_normal * normal)))
        if 0.0 < on_normal <= APPROACH + AT_START and lateral < AGENT_RADIUS / 2:
            goal = start  # in the approach lane: straight in
        else:
            path = self._path(here, approach)
            goal = path[0] if path else approach
        step = goal - here
        distance = float(np.hypot(*step))
        if distance > MAX_STEP:
            goal = here + step * (MAX_STEP / distance)
        return np.clip(goal, 0.0, 512.0).astype(np.float32)
