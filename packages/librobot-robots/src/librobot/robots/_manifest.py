"""Torch-free manifest of this package's components, loaded through the `librobot.plugins`
entry point: each entry maps a registry name (and aliases) to "module:attr" without importing it."""

from __future__ import annotations

P = "librobot.robots"


def register() -> None:
    """Add this package's lazy registry entries."""
    from librobot.core.registry import get_registry
    from librobot.robots.sim.metaworld_tasks import TASKS  # plain data, no metaworld import

    robot = get_registry("robot")
    robot.register_lazy(
        "so100_arm",
        f"{P}.so100:SO100Arm",
        aliases=["so100", "so-100"],
        doc="SO-100 5-DoF arm + gripper (Feetech STS3215 bus)",
    )
    robot.register_lazy(
        "humanoid",
        f"{P}.humanoid:Humanoid",
        aliases=["g1"],
        doc="configurable humanoid, 23 joints (Unitree G1 ranges) by default",
    )
    robot.register_lazy(
        "wheel_loader",
        f"{P}.wheel_loader:WheelLoader",
        aliases=["loader"],
        doc="articulated wheel loader, 6-D command / 22-D state over CAN",
    )

    env = get_registry("env")
    expert = get_registry("expert")
    for task, (env_id, instruction) in TASKS.items():
        env.register_lazy(
            f"metaworld-{task}",
            f"{P}.sim.metaworld_env:make_{task.replace('-', '_')}",
            aliases=[env_id],
            doc=f"Meta-World {env_id}: {instruction}",
            expert="metaworld",
            task=instruction,
            extra="librobot-robots[metaworld]",
        )
    expert.register_lazy(
        "metaworld", f"{P}.sim.metaworld_env:MetaWorldExpert", doc="Meta-World's shipped scripted policy for the task"
    )

    env.register_lazy(
        "wheel-loader-dig-dump",
        f"{P}.sim.wheel_loader_env:WheelLoaderDigDumpEnv",
        aliases=["wheel-loader-sim"],
        doc="planar articulated wheel loader: dig from a pile, dump into a truck",
        expert="wheel-loader-dig-dump",
        task="dig a bucket of gravel from the pile and dump it into the truck",
        extra="librobot-robots[sim]",
    )
    expert.register_lazy(
        "wheel-loader-dig-dump",
        f"{P}.sim.wheel_loader_expert:WheelLoaderDigDumpExpert",
        doc="scripted dig-and-dump cycle (state machine)",
    )

    env.register_lazy(
        "pusht",
        f"{P}.sim.pusht:PushTEnv",
        aliases=["gym-pusht", "push-t"],
        doc="PushT (gym-pusht): push the T block onto the T target",
        expert="pusht",
        task="push the T-shaped block onto the T-shaped target",
        extra="librobot-robots[pusht]",
    )
    expert.register_lazy(
        "pusht", f"{P}.sim.pusht:PushTExpert", doc="push planner using the simulator's own physics (privileged)"
    )
    expert.register_lazy(
        "pusht-reactive", f"{P}.sim.pusht_reactive:PushTReactiveExpert",
        doc="state-feedback pusher: each action a function of the pusher and block pose (imitable)",
    )  # fmt: skip

    env.register_lazy(
        "so100-pick-cube",
        f"{P}.sim.so100_env:SO100PickCubeEnv",
        aliases=["so100-sim"],
        doc="simulated SO-100 (MuJoCo, own model): pick up a cube",
        expert="so100-pick-cube",
        task="pick up the red cube and lift it",
        extra="librobot-robots[sim]",
    )
    expert.register_lazy(
        "so100-pick-cube", f"{P}.sim.so100_env:SO100PickExpert", doc="analytic IK waypoints: above, down, close, lift"
    )

    driver = get_registry("driver")
    driver.register_lazy(
        "feetech",
        f"{P}.drivers.feetech:FeetechBus",
        aliases=["sts3215", "scs"],
        doc="Feetech STS/SCS serial servo bus (pyserial)",
    )
    driver.register_lazy(
        "feetech-sim", f"{P}.drivers.servo_sim:SimulatedServoBus", doc="simulated Feetech servos on a pseudo-terminal"
    )
    driver.register_lazy(
        "wheel-loader-can",
        f"{P}.drivers.wheel_loader_can:WheelLoaderCanBackend",
        doc="wheel loader CAN host driver (python-can)",
    )
    driver.register_lazy(
        "wheel-loader-can-node",
        f"{P}.drivers.wheel_loader_can:WheelLoaderCanNode",
        doc="wheel loader machine-side CAN node",
    )
    driver.register_lazy(
        "opencv-camera", f"{P}.drivers.cameras:OpenCVCamera", aliases=["opencv"], doc="camera through OpenCV"
    )
    driver.register_lazy(
        "synthetic-camera", f"{P}.drivers.cameras:SyntheticCamera", doc="deterministic synthetic camera"
    )
