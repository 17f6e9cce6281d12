"""A planar articulated-steering wheel loader with boom, bucket, a gravel pile and a dump truck.

Numpy only (no gymnasium), so the same model can sit behind the CAN node in driver tests.

Vehicle: front and rear frames joined at the articulation joint (front axle Lf ahead of it, rear
axle Lr behind). With front-axle speed v, articulation γ and front heading θ (no wheel slip)::

    θ' = (v sin γ + Lr γ') / (Lf cos γ + Lr),   x' = v cos θ,   y' = v sin θ

Longitudinal: traction (gear × throttle through the engine's speed lag, falling off with speed),
rolling resistance, brakes and the pile's digging resistance act on the machine's mass. The
transmission refuses a direction change above 0.5 m/s. Hydraulics: the boom, bucket and steering
move at rates proportional to the valve commands, scaled by engine speed (pump flow).
Material: the bucket fills while its lip moves forward below the pile's surface with the bucket
near level; it spills when tilted below -0.3 rad, into the truck when the bucket is over the
truck's bed and above its side, on the ground otherwise. Driving into the truck is a crash.
The terrain is flat: z, roll, pitch and their rates stay 0 (a planar model, stated, not hidden).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from librobot.robots.drivers.can_layout import ACTION_SIGNALS, STATE_SIGNALS
from librobot.robots.wheel_loader import BOOM_RANGE, BUCKET_RANGE, MAX_ARTICULATION

LF, LR = 1.6, 1.6  # m, axles to the articulation joint
BOOM_PIVOT = (0.3, 2.3)  # m, lift-arm pivot ahead of / above the front axle
BOOM_LEN, LIP_LEN = 3.0, 1.2  # m
BUCKET_WIDTH = 2.8
MASS, CAPACITY_KG, BUCKET_KG = 20000.0, 6000.0, 1800.0
F_TRACTION, F_BRAKE, C_ROLL = 130e3, 160e3, 0.03
V_TOP = 7.0  # m/s in the working gear
IDLE_RPM, MAX_RPM = 800.0, 2200.0
BOOM_SPEED, BUCKET_SPEED, STEER_SPEED = 0.25, 0.6, 0.35  # rad/s at full valve and full pump flow
TRUCK_SIZE, TRUCK_SIDE_HEIGHT = (7.0, 2.6), 2.9  # m (length, width), m
SUBSTEPS = 5


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


@dataclass
class Site:
    """The work site: a conical pile and a truck (centre, yaw) the loader must fill."""

    pile_xy: np.ndarray
    pile_radius: float
    pile_height: float
    truck_xy: np.ndarray
    truck_yaw: float

    def pile_surface(self, p: np.ndarray) -> float:
        r = float(np.hypot(*(p - self.pile_xy)))
        return max(0.0, self.pile_height * (1.0 - r / self.pile_radius))

    def in_truck(self, p: np.ndarray, margin: float = 0.0) -> bool:
        d = p - self.truck_xy
        c, s = math.cos(self.truck_yaw), math.sin(self.truck_yaw)
        along, across = c * d[0] + s * d[1], -s * d[0] + c * d[1]
        return abs(along) <= TRUCK_SIZE[0] / 2 + margin and abs(across) <= TRUCK_SIZE[1] / 2 + margin


@dataclass
class WheelLoaderModel:
    site: Site
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0  # front frame heading
    v: float = 0.0  # front axle speed along the heading
    articulation: float = 0.0
    boom: float = BOOM_RANGE[0]
    bucket: float = 0.0
    rpm: float = IDLE_RPM
    fill: float = 0.0  # bucket load, fraction of capacity
    dumped: float = 0.0  # delivered into the truck, in bucket-capacity units
    spilled: float = 0.0
    crashed: bool = False
    gear_engaged: float = 0.0
    command: dict[str, float] = field(
        default_factory=lambda: {
            "throttle": 0.0,
            "steering": 0.0,
            "boom": 0.0,
            "bucket": 0.0,
            "brake": 1.0,
            "gear": 0.0,
        }
    )
    _rates: np.ndarray = field(default_factory=lambda: np.zeros(4))  # yaw, articulation, boom, bucket rates
    _load: float = 0.0

    # ------------------------------------------------------------------ geometry
    def heading_vec(self) -> np.ndarray:
        return np.array([math.cos(self.yaw), math.sin(self.yaw)])

    def front_axle(self) -> np.ndarray:
        return np.array([self.x, self.y])

    def rear_yaw(self) -> float:
        return self.yaw - self.articulation

    def joint(self) -> np.ndarray:
        return self.front_axle() - LF * self.heading_vec()

    def rear_axle(self) -> np.ndarray:
        return self.joint() - LR * np.array([math.cos(self.rear_yaw()), math.sin(self.rear_yaw())])

    def bucket_pivot(self) -> tuple[float, float]:
        """(distance ahead of the front axle, height) of the bucket hinge."""
        return BOOM_PIVOT[0] + BOOM_LEN * math.cos(self.boom), BOOM_PIVOT[1] + BOOM_LEN * math.sin(self.boom)

    def bucket_lip(self) -> tuple[float, float]:
        d, h = self.bucket_pivot()
        return d + LIP_LEN * math.cos(self.bucket), h + LIP_LEN * math.sin(self.bucket)

    def to_world(self, ahead: float) -> np.ndarray:
        return self.front_axle() + ahead * self.heading_vec()

    # ------------------------------------------------------------------ command / telemetry
    def set_command(self, command: dict[str, float]) -> None:
        cmd = {k: float(command[k]) for k in ACTION_SIGNALS}
        if not all(math.isfinite(v) for v in cmd.values()):
            raise ValueError(f"non-finite wheel-loader command {cmd}")
        self.command = cmd

    def telemetry(self) -> dict[str, float]:
        hyd = min(
            330.0,
            25.0
            + 200.0 * (BUCKET_KG + self.fill * CAPACITY_KG) / (BUCKET_KG + CAPACITY_KG) * max(0.2, math.cos(self.boom))
            + 80.0 * abs(self.command["boom"])
            + 60.0 * abs(self.command["bucket"]),
        )
        load = min(1.0, self._load)
        return {
            "x": self.x,
            "y": self.y,
            "z": 0.0,
            "roll": 0.0,
            "pitch": 0.0,
            "yaw": _wrap(self.yaw),
            "vx": self.v,
            "vy": 0.0,
            "vz": 0.0,
            "roll_rate": 0.0,
            "pitch_rate": 0.0,
            "yaw_rate": float(self._rates[0]),
            "articulation": self.articulation,
            "boom_angle": self.boom,
            "bucket_angle": self.bucket,
            "articulation_rate": float(self._rates[1]),
            "boom_rate": float(self._rates[2]),
            "bucket_rate": float(self._rates[3]),
            "engine_rpm": self.rpm,
            "engine_load": load,
            "hydraulic_pressure": hyd,
            "fuel_rate": min(80.0, 4.0 + 60.0 * load * self.rpm / MAX_RPM),
            "gear_engaged": self.gear_engaged,
        }

    def state_vector(self) -> np.ndarray:
        t = self.telemetry()
        return np.array([t[k] for k in STATE_SIGNALS])

    # ------------------------------------------------------------------ dynamics
    def step(self, dt: float) -> None:
        h = dt / SUBSTEPS
        for _ in range(SUBSTEPS):
            self._substep(h)

    def _substep(self, h: float) -> None:
        c = self.command
        throttle, brake = min(1.0, max(0.0, c["throttle"])), min(1.0, max(0.0, c["brake"]))
        # Engine speed follows the pedal with a 0.4 s lag; pump flow scales the hydraulics.
        self.rpm += (IDLE_RPM + throttle * (MAX_RPM - IDLE_RPM) - self.rpm) * min(1.0, h / 0.4)
        flow = min(1.0, max(0.45, self.rpm / 1600.0))
        # Transmission: no direction change above 0.5 m/s.
        want = float(max(-1, min(1, round(c["gear"]))))
        self.gear_engaged = want if (want == 0 or want * self.v >= 0 or abs(self.v) < 0.5) else 0.0
        # Hydraulics.
        g_rate = max(-STEER_SPEED * flow, min(STEER_SPEED * flow, 3.0 * (c["steering"] - self.articulation)))
        new_g = max(-MAX_ARTICULATION, min(MAX_ARTICULATION, self.articulation + g_rate * h))
        g_rate = (new_g - self.articulation) / h
        boom_rate = max(-1.0, min(1.0, c["boom"])) * BOOM_SPEED * flow
        new_boom = max(BOOM_RANGE[0], min(BOOM_RANGE[1], self.boom + boom_rate * h))
        bucket_rate = max(-1.0, min(1.0, c["bucket"])) * BUCKET_SPEED * flow
        new_bucket = max(BUCKET_RANGE[0], min(BUCKET_RANGE[1], self.bucket + bucket_rate * h))
        # Digging: the lip below the pile surface while moving forward fills the bucket and resists.
        lip_d, lip_h = self.bucket_lip()
        lip_xy = self.to_world(lip_d)
        depth = self.site.pile_surface(lip_xy) - lip_h
        digging = depth > 0.05 and self.v > 0.05 and -0.25 <= self.bucket <= 0.45
        f_pile = 0.0
        if depth > 0.05 and self.v > 0.0:
            f_pile = (35e3 + 90e3 * self.fill) * min(1.0, depth / 0.8)
        if digging:
            self.fill = min(1.0, self.fill + self.v * h * 0.22 * min(1.0, depth / 0.6))
        # Longitudinal dynamics.
        mass = MASS + self.fill * CAPACITY_KG
        drive = max(0.0, (self.rpm - IDLE_RPM) / (MAX_RPM - IDLE_RPM))
        f_trac = self.gear_engaged * drive * F_TRACTION * max(0.0, 1.0 - abs(self.v) / V_TOP)
        resist = C_ROLL * mass * 9.81 + brake * F_BRAKE + f_pile
        self._load = abs(f_trac) / F_TRACTION + 0.3 * (abs(c["boom"]) + abs(c["bucket"])) * flow
        if self.v == 0.0 and abs(f_trac) <= resist:
            dv = 0.0
        else:
            direction = math.copysign(1.0, self.v if self.v != 0.0 else f_trac)
            dv = (f_trac - direction * resist) / mass * h
            if self.v != 0.0 and (self.v + dv) * self.v < 0:  # resistance stops, never reverses
                dv = -self.v
        self.v += dv
        # Articulated kinematics.
        yaw_rate = (self.v * math.sin(self.articulation) + LR * g_rate) / (LF * math.cos(self.articulation) + LR)
        self.yaw += yaw_rate * h
        self.x += self.v * math.cos(self.yaw) * h
        self.y += self.v * math.sin(self.yaw) * h
        self._rates = np.array([yaw_rate, g_rate, (new_boom - self.boom) / h, (new_bucket - self.bucket) / h])
        self.articulation, self.boom, self.bucket = new_g, new_boom, new_bucket
        self._spill(h)
        self._check_crash()

    def _spill(self, h: float) -> None:
        if self.fill <= 0.0 or self.bucket >= -0.3:
            return
        amount = min(self.fill, (-0.3 - self.bucket) * 2.5 * h)
        self.fill -= amount
        pivot_d, pivot_h = self.bucket_pivot()
        centre = self.to_world(pivot_d + 0.5 * LIP_LEN)
        if pivot_h > TRUCK_SIDE_HEIGHT + 0.4 and self.site.in_truck(centre):
            self.dumped += amount
        else:
            self.spilled += amount

    def _check_crash(self) -> None:
        pivot_d, pivot_h = self.bucket_pivot()
        lip_d, _ = self.bucket_lip()
        body = [self.front_axle(), self.joint(), self.rear_axle()]
        bucket_pts = [self.to_world(pivot_d), self.to_world(max(pivot_d, lip_d))]
        if any(self.site.in_truck(p, margin=1.2) for p in body) or (
            pivot_h < TRUCK_SIDE_HEIGHT + 0.2 and any(self.site.in_truck(p) for p in bucket_pts)
        ):
            self.crashed = True
