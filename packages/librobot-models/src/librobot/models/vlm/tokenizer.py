"""A byte-level BPE tokenizer trained in-process, for backbones that have no tokenizer files.

Tiny and randomly initialised variants cannot load their real tokenizer offline, so they get this
one: every byte is in the base alphabet (any text encodes, nothing is unknown), a few hundred merges
are learned from the built-in instruction corpus below, and each family adds its structure tokens
(image placeholders, vision start/end…) as special tokens. Training is deterministic and takes ~10 ms;
the result is a ``PreTrainedTokenizerFast`` that ``save_pretrained`` writes as a normal tokenizer.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

# Instruction-like sentences (robot manipulation, navigation, a wheel loader) so the learned merges
# cover the words policies are actually given.
CORPUS = """
pick up the red block and place it in the bowl
put the blue cube on top of the green cube
open the top drawer and put the sponge inside
close the microwave door
push the t-shaped block to the target
stack the cups from largest to smallest
move the arm to the left of the mug
grasp the handle and turn it clockwise
wipe the table with the towel
insert the peg into the hole
fold the cloth in half
pour the water from the bottle into the glass
turn on the stove and put the pot on it
pick the apple and drop it in the basket
slide the plate to the right edge of the table
press the button on the wall
hang the mug on the rack
load the gravel into the truck with the bucket
raise the boom and tilt the bucket forward
drive forward slowly and stop at the pile
reverse, lower the bucket and dig into the pile
the robot should not touch the glass
go to the kitchen and bring me the cup
navigate to the charging station
what is on the table? where is the robot?
a photo of a robot arm grasping a small object
two cameras: wrist view and third person view
""".strip().splitlines()

BASE_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


@lru_cache(maxsize=16)
def _train(vocab_size: int, specials: tuple[str, ...]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return tok.to_str()


def build_byte_tokenizer(extra_specials: Sequence[str] = (), vocab_size: int = 512, padding_side: str = "left"):
    """A fresh ``PreTrainedTokenizerFast``: ids 0-3 are <pad> <s> </s> <unk>, the learned byte-level
    vocabulary follows, and ``extra_specials`` are appended after it (as real checkpoints add theirs)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    specials = tuple(dict.fromkeys((*BASE_SPECIALS, *extra_specials)))
    tok = Tokenizer.from_str(_train(vocab_size, BASE_SPECIALS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side=padding_side,
    )
    extra = [s for s in specials if s not in BASE_SPECIALS]
    if extra:
        fast.add_special_tokens({"additional_special_tokens": extra})
    return fast
