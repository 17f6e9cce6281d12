"""Feetech STS protocol: framing and checksum, then the driver end to end over a real pseudo-terminal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from librobot.core.errors import ConfigError, SpecError
from librobot.robots.drivers import feetech_protocol as fp
from librobot.robots.drivers.feetech import FeetechBus
from librobot.robots.drivers.servo_sim import SimulatedServoBus
from librobot.robots.so100 import JOINTS, SO100Arm

IDS = [1, 2, 3, 4, 5, 6]
# Generous: the simulated servos answer from a Python thread that a loaded machine may schedule late,
# and a reply arriving after the host gave up would be read as the answer to the next request.
TIMEOUT = 0.5


def test_packet_framing_and_checksum_match_the_protocol():
    # READ 2 bytes at address 56 (present position) from servo 1.
    packet = fp.encode_instruction(1, fp.Instruction.READ, bytes((56, 2)))
    assert packet.hex(" ") == "ff ff 01 04 02 38 02 be"
    assert 0xBE == (~(1 + 4 + 2 + 56 + 2)) & 0xFF
    decoded = fp.decode_packet(packet)
    assert (decoded.servo_id, decoded.code, decoded.params) == (1, 0x02, b"\x38\x02")
    bad = packet[:-1] + b"\x00"
    with pytest.raises(fp.FeetechChecksumError, match="expected 0xbe"):
        fp.decode_packet(bad)
    with pytest.raises(fp.FeetechFrameError, match="length byte"):
        fp.decode_packet(packet[:-2])
    with pytest.raises(fp.FeetechFrameError, match="servo id"):
        fp.encode_instruction(254 + 2, fp.Instruction.PING)


def test_value_encoding_is_little_endian_sign_magnitude():
    assert fp.encode_value(2048, 2) == b"\x00\x08"
    assert fp.encode_value(-100, 2, signed=True) == bytes((100, 0x80))
    assert fp.decode_value(bytes((100, 0x80)), signed=True) == -100
    assert fp.encode_value(0x1234, 2, endian="big") == b"\x12\x34"
    with pytest.raises(fp.FeetechFrameError, match="does not fit"):
        fp.encode_value(4096 * 16, 2)


def test_packet_reader_resyncs_over_noise_and_drops_corrupt_frames():
    reader = fp.PacketReader()
    good = fp.encode_status(3, 0, b"\x10\x20")
    corrupt = bytearray(fp.encode_status(4, 0, b"\x01"))
    corrupt[-1] ^= 0xFF
    stream = b"\x00\x13\xff" + good + bytes(corrupt) + good[:4]
    packets = reader.feed(stream)
    assert [(p.servo_id, p.params) for p in packets] == [(3, b"\x10\x20")]
    assert len(reader.errors) == 1 and "checksum" in reader.errors[0]
    assert reader.feed(good[4:]) == [fp.decode_packet(good)]  # a frame split across reads


@pytest.fixture()
def bus():
    with SimulatedServoBus(IDS) as sim:
        b = FeetechBus(sim.port, timeout=TIMEOUT)
        b.open()
        yield sim, b
        b.close()


def test_ping_read_write_sync_read_and_sync_write_over_a_pty(bus):
    sim, b = bus
    assert sim.port.startswith("/dev/pts/")
    assert b.ping(3) and not b.ping(9)
    assert b.model_number(2) == fp.STS3215_MODEL
    assert b.read_positions(IDS) == {i: 2048 for i in IDS}
    b.write_value(4, fp.TORQUE_ENABLE, 1)
    assert b.read_value(4, fp.TORQUE_ENABLE) == 1
    b.set_torque(IDS, True)
    b.write_positions({1: 1000, 2: 3000, 6: 2100})
    assert b.ping(1)  # a SYNC_WRITE has no reply; the bus is in order, so this round trip follows it
    assert (sim.goal(1), sim.goal(2), sim.goal(6), sim.goal(3)) == (1000, 3000, 2100, 2048)
    sim.advance(0.1)  # 340 ticks max per 0.1 s
    assert b.read_positions([1, 2, 6]) == {1: 2048 - 340, 2: 2048 + 340, 6: 2100}
    speeds = b.sync_read(fp.PRESENT_SPEED, [1, 2])
    assert fp.decode_value(speeds[1], signed=True) == -3400 and fp.decode_value(speeds[2], signed=True) == 3400
    sync_writes = sim.instructions(fp.Instruction.SYNC_WRITE)
    assert sync_writes[-1].params[:2] == bytes((fp.GOAL_POSITION.address, 2))


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("checksum", fp.FeetechChecksumError, "checksum mismatch"),
        ("truncate", fp.FeetechTimeoutError, "truncated reply: got 5 of 8 bytes"),  # waits out the timeout
        ("drop", fp.FeetechTimeoutError, "no reply"),
        ("error_bit", fp.FeetechStatusError, "overload"),
    ],
)
def test_corrupted_replies_raise_clear_errors_and_the_bus_recovers(bus, fault, error, message):
    sim, b = bus
    sim.inject(fault)
    with pytest.raises(error, match=message):
        b.read_positions([1])
    assert b.read_positions([1, 2]) == {1: 2048, 2: 2048}  # stale bytes flushed, next transaction clean


def test_line_noise_before_a_reply_is_skipped(bus):
    sim, b = bus
    sim.inject("ok", "noise")
    assert b.read_positions([1, 2]) == {1: 2048, 2: 2048}


def test_servo_ignores_an_instruction_with_a_bad_checksum(bus):
    sim, b = bus
    b.set_torque([1], True)
    packet = bytearray(
        fp.encode_instruction(1, fp.Instruction.WRITE, bytes((fp.GOAL_POSITION.address,)) + fp.encode_value(100, 2))
    )
    packet[-1] ^= 0x55
    b._serial.write(bytes(packet))
    assert b.ping(1)  # round trip: the corrupt write was seen (and ignored) before this
    assert sim.goal(1) == 2048 and any("checksum" in r for r in sim.rejected)


def test_invalid_goal_positions_send_nothing(bus):
    sim, b = bus
    sent = b.packets_sent
    for bad in ({1: 5000}, {1: -1}, {1: float("nan")}, {1: 10.5}):
        with pytest.raises(fp.FeetechFrameError, match="nothing was sent"):
            b.write_positions(bad)
    assert b.packets_sent == sent and sim.instructions(fp.Instruction.SYNC_WRITE) == []


def test_so100_arm_end_to_end_over_the_pty():
    with SimulatedServoBus(IDS, initial_positions={2: 2048 + 512}) as sim:
        arm = SO100Arm(port=sim.port, timeout=TIMEOUT)
        with arm:
            assert arm.is_connected
            obs = arm.get_observation()["observation.state"]
            assert obs.shape == (12,) and obs.dtype == np.float32
            assert obs[1] == pytest.approx(math.pi / 4, abs=1e-6)  # 512 ticks = 45°
            np.testing.assert_allclose(obs[6:], 0.0)
            target = np.array([0.3, 0.785, -0.5, 0.2, 0.0, 0.8])
            arm.send_action(target)
            arm.get_observation()  # round trip: the sim has handled the SYNC_WRITE before answering
            assert [sim.goal(i) for i in IDS] == [round(2048 + t * 4096 / (2 * math.pi)) for t in target]
            sim.advance(1.0)
            state = arm.get_observation()["observation.state"]
            np.testing.assert_allclose(state[:6], target, atol=2 * math.pi / 4096)
            with pytest.raises(SpecError, match="outside"):
                arm.send_action([3.0, 0, 0, 0, 0, 0])  # beyond shoulder_pan's ±1.92 rad
            handled = len(sim.received)
        assert not arm.is_connected and sim.wait_received(handled + 1)  # the torque-off SYNC_WRITE
        assert sim.servos[1].get(fp.TORQUE_ENABLE) == 0  # torque released on disconnect


def test_corrupt_state_read_means_no_command_is_sent():
    with SimulatedServoBus(IDS) as sim:
        arm = SO100Arm(port=sim.port, timeout=TIMEOUT)
        arm.connect()
        assert arm.backend.bus.ping(1)  # round trip: connect's SYNC_WRITEs (no replies) are handled by now
        writes_before = len(sim.instructions(fp.Instruction.SYNC_WRITE))
        sim.inject("ok", "ok", "checksum")  # the third servo's reply in the sync read is corrupted

        def control_step():
            state = arm.get_observation()["observation.state"]
            arm.send_action(state[:6] + 0.1)

        with pytest.raises(fp.FeetechChecksumError, match="servo 3"):
            control_step()
        assert len(sim.instructions(fp.Instruction.SYNC_WRITE)) == writes_before
        assert [sim.goal(i) for i in IDS] == [2048] * 6
        control_step()  # the next tick is clean
        arm.get_observation()  # round trip after the SYNC_WRITE
        assert len(sim.instructions(fp.Instruction.SYNC_WRITE)) == writes_before + 1
        arm.disconnect()


def test_missing_servo_and_missing_port_are_reported():
    with SimulatedServoBus([1, 2, 3, 4, 5]) as sim:
        with pytest.raises(ConfigError, match=r"servos \[6\] do not answer"):
            SO100Arm(port=sim.port, timeout=0.3).connect()
    with pytest.raises(ConfigError, match="no hardware backend"):
        SO100Arm().connect()
    with pytest.raises(fp.FeetechTimeoutError, match="cannot open serial port"):
        FeetechBus("/dev/does-not-exist").open()
    assert len(JOINTS) == 6
