"""Wheel-loader CAN layout and drivers over python-can's virtual bus (and vcan0 when the machine has it)."""

from __future__ import annotations

import itertools
import os

import can
import numpy as np
import pytest

from librobot.core.errors import SpecError
from librobot.robots import ManualClock, WheelLoader
from librobot.robots.drivers import can_layout as cl
from librobot.robots.drivers.wheel_loader_can import CanTimeoutError, WheelLoaderCanBackend, WheelLoaderCanNode
from librobot.robots.sim.wheel_loader_model import Site, WheelLoaderModel

_channels = itertools.count()
# The Linux virtual CAN interface is used too where it exists (it cannot be created in every sandbox).
TRANSPORTS = ["virtual"] + (["socketcan"] if os.path.exists("/sys/class/net/vcan0") else [])
_SCALE = {s.name: s.scale for m in cl.MESSAGES for s in m.signals}
# Half a bit of each signal's resolution, plus float32 rounding of the observation.
TOL = np.array([_SCALE[k] / 2 for k in cl.STATE_SIGNALS]) + 1e-6 * np.abs(
    np.array([8000, 8000, 100] + [3] * 15 + [2400, 1, 350, 80])
)


def test_crc8_is_sae_j1850():
    assert cl.crc8(b"123456789") == 0x4B  # the standard check value of CRC-8/SAE-J1850


def test_every_message_round_trips_within_its_resolution():
    rng = np.random.default_rng(1)
    for msg in cl.MESSAGES:
        values = {}
        for s in msg.signals:
            bits = 8 * s.size
            lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if s.signed else (0, 2**bits - 1)
            values[s.name] = float(rng.uniform(lo, hi)) * s.scale
        can_id, data = cl.encode(msg.name, values, counter=7)
        assert can_id == msg.can_id and len(data) == 8 and data[6] == 0x17
        name, decoded, counter = cl.decode(can_id, data)
        assert name == msg.name and counter == 7
        for s in msg.signals:
            assert abs(decoded[s.name] - values[s.name]) <= s.scale / 2 + 1e-12


def test_bad_values_and_bad_frames_give_clear_errors():
    with pytest.raises(cl.CanFrameError, match=r"CMD_DRIVE.throttle=2 fraction does not fit"):
        cl.encode("CMD_DRIVE", {"throttle": 2.0, "steering": 0.0, "brake": 0.0}, 0)
    with pytest.raises(cl.CanFrameError, match="only finite"):
        cl.encode("CMD_DRIVE", {"throttle": float("nan"), "steering": 0.0, "brake": 0.0}, 0)
    can_id, data = cl.encode("CMD_DRIVE", {"throttle": 0.5, "steering": 0.1, "brake": 0.0}, 3)
    with pytest.raises(cl.CanFrameError, match="truncated frame, DLC 5"):
        cl.decode(can_id, data[:5])
    flipped = bytes([data[0] ^ 0x01]) + data[1:]
    with pytest.raises(cl.CanFrameError, match="CRC mismatch"):
        cl.decode(can_id, flipped)
    with pytest.raises(cl.CanFrameError, match="CRC mismatch"):  # same bytes under another id: the id is in the CRC
        cl.decode(0x101, data)
    with pytest.raises(cl.CanFrameError, match="counter 3 repeated"):
        cl.decode(can_id, data, previous_counter=3)
    with pytest.raises(cl.CanFrameError, match="not part of the wheel-loader layout"):
        cl.decode(0x7FF, data)


class Rig:
    """Host robot and machine node on one CAN channel, the node driving the planar model."""

    def __init__(self, transport: str) -> None:
        channel = f"wl-test-{next(_channels)}" if transport == "virtual" else "vcan0"
        self.host_bus = can.Bus(interface=transport, channel=channel)
        self.machine_bus = can.Bus(interface=transport, channel=channel)
        self.clock = ManualClock()
        site = Site(np.array([15.0, 0.0]), 4.0, 2.5, np.array([4.0, 12.0]), 0.0)
        self.model = WheelLoaderModel(site, x=1.5, y=-2.0, yaw=0.3)
        self.node = WheelLoaderCanNode(self.machine_bus, self.model.set_command, self.model.telemetry, clock=self.clock)
        self.backend = WheelLoaderCanBackend(bus=self.host_bus, telemetry_timeout=0.02, clock=self.clock)
        self.robot = WheelLoader(backend=self.backend)
        self.robot.connect()

    def close(self) -> None:
        self.robot.disconnect()
        self.host_bus.shutdown()
        self.machine_bus.shutdown()

    def raw(self, can_id: int, data: bytes) -> None:
        self.host_bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False))


@pytest.fixture(params=TRANSPORTS)
def rig(request):
    r = Rig(request.param)
    yield r
    r.close()


def test_commands_and_telemetry_cross_the_bus(rig):
    rig.node.publish()
    state = rig.robot.get_observation()["observation.state"]
    assert (np.abs(state - rig.model.state_vector()) <= TOL).all()
    assert state[0] == pytest.approx(1.5, abs=1e-3) and state[5] == pytest.approx(0.3, abs=1e-4)
    command = [0.6, 0.3, 0.5, -0.25, 0.0, 1.0]
    rig.robot.send_action(command)
    rig.node.process()
    assert rig.node.applied == 1
    got = [rig.model.command[k] for k in cl.ACTION_SIGNALS]
    np.testing.assert_allclose(got, command, atol=1e-4)
    for _ in range(40):  # 2 s of driving, commands refreshed every tick
        rig.clock.advance(0.05)
        rig.robot.send_action(command)
        rig.node.process()
        rig.model.step(0.05)
    rig.node.publish()
    state = rig.robot.get_observation()["observation.state"]
    assert (np.abs(state - rig.model.state_vector()) <= TOL).all()
    assert state[6] > 0.5 and state[12] > 0.2 and state[13] > -0.75  # moving, articulated, boom rising
    assert rig.backend.machine_status == 0 and rig.node.rejected == []


def test_corrupted_command_frames_are_rejected_and_not_applied(rig):
    rig.robot.send_action([0.2, 0.0, 0.0, 0.0, 0.0, 1.0])
    rig.node.process()
    before = dict(rig.model.command)
    drive_id, drive = cl.encode("CMD_DRIVE", {"throttle": 1.0, "steering": 0.5, "brake": 0.0}, 5)
    impl_id, impl = cl.encode("CMD_IMPLEMENT", {"boom": 1.0, "bucket": 1.0, "gear": 1.0}, 5)
    rig.raw(drive_id, drive[:7] + bytes([drive[7] ^ 0xFF]))  # bad CRC
    rig.raw(impl_id, impl[:5])  # truncated
    rig.raw(drive_id, bytes([drive[0], drive[1] ^ 0x40]) + drive[2:])  # a flipped bit in the payload
    rig.clock.advance(0.05)
    rig.node.process()
    assert len(rig.node.rejected) == 3
    assert "CRC mismatch" in rig.node.rejected[0] and "truncated frame" in rig.node.rejected[1]
    assert rig.model.command == before and rig.node.applied == 1
    # A valid drive frame alone (its implement half corrupted) is still not applied.
    rig.raw(drive_id, drive)
    rig.raw(impl_id, impl[:7] + bytes([impl[7] ^ 1]))
    rig.node.process()
    assert rig.model.command == before and rig.node.applied == 1
    rig.raw(impl_id, impl)
    rig.raw(impl_id, impl)  # the same counter again: a replayed frame
    rig.node.process()
    assert rig.node.applied == 2 and "repeated" in rig.node.rejected[-1]
    assert rig.model.command["throttle"] == 1.0


def test_invalid_commands_send_no_frames(rig):
    sent = rig.backend.frames_sent
    with pytest.raises(SpecError, match="NaN"):
        rig.robot.send_action([np.nan, 0, 0, 0, 0, 1])
    with pytest.raises(cl.CanFrameError, match="boom"):
        rig.backend.write_action(np.array([0.5, 0.0, 5.0, 0.0, 0.0, 1.0]))  # bypassing the robot's limit check
    assert rig.backend.frames_sent == sent and rig.machine_bus.recv(0.0) is None


def test_machine_watchdog_and_estop(rig):
    rig.robot.send_action([0.7, 0.2, 0.0, 0.0, 0.0, 1.0])
    rig.node.process()
    assert rig.node.safe_state == 0 and rig.model.command["throttle"] == pytest.approx(0.7)
    rig.clock.advance(0.2)  # no command for longer than the node's 0.15 s deadline
    rig.node.process()
    assert rig.node.safe_state == 1
    assert rig.model.command["throttle"] == 0.0 and rig.model.command["brake"] == 1.0
    assert rig.model.command["steering"] == pytest.approx(0.2, abs=1e-4)  # steering held
    rig.node.publish()
    rig.robot.get_observation()
    assert rig.backend.machine_status == 1
    rig.robot.emergency_stop(True)
    rig.robot.send_action([0.7, 0.2, 0.0, 0.0, 0.0, 1.0])
    rig.node.process()
    assert rig.node.safe_state == 2 and rig.model.command["brake"] == 1.0
    rig.robot.emergency_stop(False)
    rig.robot.send_action([0.7, 0.2, 0.0, 0.0, 0.0, 1.0])
    rig.node.process()
    assert rig.node.safe_state == 0 and rig.model.command["throttle"] == pytest.approx(0.7)


def test_corrupt_or_missing_telemetry_is_reported(rig):
    with pytest.raises(CanTimeoutError, match="TEL_POSITION_XY"):
        rig.robot.get_observation()  # nothing published yet
    rig.node.publish()
    msg = rig.machine_bus  # corrupt one telemetry frame on the wire
    can_id, data = cl.encode(
        "TEL_ENGINE", {"engine_rpm": 1000, "engine_load": 0.5, "hydraulic_pressure": 100, "fuel_rate": 10}, 9
    )
    msg.send(can.Message(arbitration_id=can_id, data=data[:7] + bytes([data[7] ^ 0x10]), is_extended_id=False))
    state = rig.robot.get_observation()["observation.state"]
    assert state[18] == pytest.approx(rig.model.rpm, abs=0.2)  # the corrupt frame did not overwrite rpm
    assert any("TEL_ENGINE" in e and "CRC" in e for e in rig.backend.errors)
    rig.clock.advance(0.05)  # older than the 0.02 s telemetry deadline
    with pytest.raises(CanTimeoutError, match="no valid telemetry"):
        rig.robot.get_observation()


def test_the_example_frames_in_docs_can_protocol_md():
    assert cl.encode("CMD_DRIVE", {"throttle": 0.5, "steering": -0.1, "brake": 0.0}, 3) == (
        0x100,
        bytes.fromhex("a8 61 18 fc 00 00 13 54"),
    )
    assert cl.encode("CMD_IMPLEMENT", {"boom": 0.25, "bucket": -1.0, "gear": 1}, 3) == (
        0x101,
        bytes.fromhex("4c 1d d0 8a 01 00 13 c7"),
    )
    assert cl.encode("ESTOP", {"stop": cl.ESTOP_MAGIC}, 0) == (0x010, bytes.fromhex("a5 00 00 00 00 00 10 d2"))
