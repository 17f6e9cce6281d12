"""Scripted dig-and-dump expert for the wheel-loader environment (a state machine).

approach (boom down, bucket level, drive at the pile) → dig (crowd forward, curl as the bucket
fills) → curl (bucket back, boom up a little) → reverse (back out, swinging the nose toward the
truck, boom to carry height) → to_truck (drive to a stop point beside the truck, boom to full
height) → dump (brake, tip the bucket). It reads the site layout from the simulator (privileged
information, as every scripted expert does) and steers by pure pursuit on the front frame.
"""

from __future__ import annotations

import math

import numpy as np

from librobot.core.errors import ConfigError
from librobot.robots.sim.wheel_loader_env import WheelLoaderDigDumpEnv
from librobot.robots.sim.wheel_loader_model import TRUCK_SIZE
from librobot.robots.wheel_loader import BOOM_RANGE, MAX_ARTICULATION

STOP_STANDOFF = 1.5  # m from the truck's side to the front axle at the dump stop
CARRY_BOOM, DUMP_BOOM = -0.25, BOOM_RANGE[1]


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class WheelLoaderDigDumpExpert:
    def __init__(self, env: WheelLoaderDigDumpEnv) -> None:
        if not isinstance(env, WheelLoaderDigDumpEnv):
            raise ConfigError(f"the dig-and-dump expert drives WheelLoaderDigDumpEnv, got {type(env).__name__}")
        self.env = env
        self.reset()

    def reset(self) -> None:
        self.phase = "approach"
        self.stalled = 0

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _speed(v: float, target: float) -> tuple[float, float]:
        """(throttle, brake) to track ``target`` speed magnitude."""
        err = target - abs(v)
        if err >= 0:
            return min(1.0, 0.35 + 0.5 * err), 0.0
        return 0.0, min(1.0, -0.6 * err)

    @staticmethod
    def _valve(current: float, target: float, gain: float = 4.0) -> float:
        return float(np.clip(gain * (target - current), -1.0, 1.0))

    def _dump_stop(self) -> tuple[np.ndarray, np.ndarray]:
        """(stop point for the front axle, unit vector pointing from it into the truck)."""
        site, m = self.env.model.site, self.env.model
        normal = np.array([-math.sin(site.truck_yaw), math.cos(site.truck_yaw)])
        if np.dot(m.front_axle() - site.truck_xy, normal) < 0:
            normal = -normal  # the side of the truck the loader is on
        return site.truck_xy + normal * (TRUCK_SIZE[1] / 2 + STOP_STANDOFF), -normal

    # ------------------------------------------------------------------ policy
    def act(self, observation: object) -> np.ndarray:
        m = self.env.model
        assert m is not None, "reset the env first"
        site = m.site
        throttle, brake, gear = 0.0, 0.0, 1.0
        steering, boom_cmd, bucket_cmd = m.articulation, 0.0, 0.0
        lip_d, lip_h = m.bucket_lip()
        stop, into = self._dump_stop()

        if self.phase == "approach":
            boom_cmd = self._valve(m.boom, BOOM_RANGE[0], 2.0)
            bucket_cmd = self._valve(m.bucket, 0.05)
            to_pile = site.pile_xy - m.front_axle()
            steering = float(
                np.clip(1.5 * _wrap(math.atan2(to_pile[1], to_pile[0]) - m.yaw), -MAX_ARTICULATION, MAX_ARTICULATION)
            )
            ready = m.boom < BOOM_RANGE[0] + 0.1
            throttle, brake = self._speed(m.v, 2.0 if ready else 0.8)
            if site.pile_surface(m.to_world(lip_d)) - lip_h > 0.05:
                self.phase = "dig"
        elif self.phase == "dig":
            steering = 0.0
            throttle = 0.8
            bucket_cmd = self._valve(m.bucket, 0.05 + 0.3 * m.fill)
            boom_cmd = 0.35 if m.fill > 0.4 else 0.0
            self.stalled = self.stalled + 1 if m.v < 0.15 else 0
            if m.fill >= 0.95 or (self.stalled > 30 and m.fill > 0.6):
                self.phase = "curl"
        elif self.phase == "curl":
            throttle, brake = 0.2, 0.0
            bucket_cmd = 1.0
            boom_cmd = 0.4
            if m.bucket >= 0.7:
                self.phase = "reverse"
        if self.phase == "reverse":
            gear = -1.0
            bucket_cmd = self._valve(m.bucket, 0.75)
            boom_cmd = self._valve(m.boom, CARRY_BOOM)
            # Point the nose at a spot well in front of the dump stop while backing away.
            aim = stop - into * 8.0
            to_aim = aim - m.front_axle()
            err = _wrap(math.atan2(to_aim[1], to_aim[0]) - m.yaw)
            steering = float(np.clip(-1.6 * err, -MAX_ARTICULATION, MAX_ARTICULATION))
            far = np.hypot(*(m.front_axle() - site.pile_xy)) > site.pile_radius + 4.0
            throttle, brake = self._speed(m.v, 2.0)
            if far and abs(err) < 0.2:
                throttle, brake = 0.0, 1.0
                if abs(m.v) < 0.05:
                    self.phase = "to_truck"
        elif self.phase == "to_truck":
            bucket_cmd = self._valve(m.bucket, 0.75)
            to_stop = stop - m.front_axle()
            dist = float(np.hypot(*to_stop))
            boom_cmd = self._valve(m.boom, DUMP_BOOM if dist < 12.0 else CARRY_BOOM)
            # Pure pursuit on a point behind the stop along the approach line: arrive square to the truck.
            along = float(np.dot(to_stop, into))
            target = stop - into * max(0.0, min(4.0, along - 1.0))
            to_t = target - m.front_axle()
            steering = float(
                np.clip(1.5 * _wrap(math.atan2(to_t[1], to_t[0]) - m.yaw), -MAX_ARTICULATION, MAX_ARTICULATION)
            )
            boom_ready = m.boom > DUMP_BOOM - 0.1
            speed = min(2.0, 0.5 * along + 0.2) if boom_ready or along > 4.0 else 0.0
            throttle, brake = self._speed(m.v, speed)
            if along < 0.15:
                throttle, brake = 0.0, 1.0
                if abs(m.v) < 0.05 and boom_ready:
                    self.phase = "dump"
        elif self.phase == "dump":
            brake, gear = 1.0, 0.0
            boom_cmd = self._valve(m.boom, DUMP_BOOM)
            bucket_cmd = -1.0
        return np.array([throttle, steering, boom_cmd, bucket_cmd, brake, gear], dtype=np.float32)
