"""Run under torchrun by test_distributed.py: one process group, then one training run per
config file named on the command line (so DDP and FSDP share a single launch)."""

import json
import sys

import torch.distributed as dist

from librobot.train.run import train_from_config

if __name__ == "__main__":
    dist.init_process_group("gloo")
    for path in sys.argv[1:]:
        with open(path) as handle:
            train_from_config(json.load(handle))
    dist.destroy_process_group()
