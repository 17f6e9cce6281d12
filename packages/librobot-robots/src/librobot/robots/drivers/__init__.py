"""Hardware drivers: Feetech serial servos (SO-100), CAN (wheel loader), cameras.

Each driver imports its third-party library (pyserial, python-can, OpenCV) only when used, and
names the extra to install when it is missing.
"""
