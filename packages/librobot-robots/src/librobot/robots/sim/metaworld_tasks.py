"""Meta-World task table: our registry name → (Meta-World v3 id, language instruction).

Plain data, importable without metaworld, so the manifest can register every task lazily.
Instructions describe what success means in each task's own terms (what moves where).
"""

from __future__ import annotations

TASKS: dict[str, tuple[str, str]] = {
    "assembly": ("assembly-v3", "pick up the nut by its handle and place it over the peg"),
    "basketball": ("basketball-v3", "pick up the ball and drop it into the basket hoop"),
    "bin-picking": ("bin-picking-v3", "pick the cube out of the left bin and place it in the right bin"),
    "box-close": ("box-close-v3", "pick up the lid and put it on top of the box"),
    "button-press-topdown": ("button-press-topdown-v3", "press the button down from above"),
    "button-press-topdown-wall": (
        "button-press-topdown-wall-v3",
        "press the button down from above, reaching past the wall",
    ),
    "button-press": ("button-press-v3", "push the button on the front of the box"),
    "button-press-wall": ("button-press-wall-v3", "push the button on the box behind the short wall"),
    "coffee-button": ("coffee-button-v3", "push the button on the coffee machine"),
    "coffee-pull": ("coffee-pull-v3", "pull the mug out from under the coffee machine"),
    "coffee-push": ("coffee-push-v3", "push the mug under the coffee machine spout"),
    "dial-turn": ("dial-turn-v3", "turn the dial a quarter turn"),
    "disassemble": ("disassemble-v3", "lift the nut up and off the peg"),
    "door-close": ("door-close-v3", "swing the open door shut"),
    "door-lock": ("door-lock-v3", "turn the door lock knob down to lock it"),
    "door-open": ("door-open-v3", "pull the door open by its handle"),
    "door-unlock": ("door-unlock-v3", "turn the door lock knob to unlock it"),
    "hand-insert": ("hand-insert-v3", "grasp the block and put it into the hole in the table"),
    "drawer-close": ("drawer-close-v3", "push the drawer closed"),
    "drawer-open": ("drawer-open-v3", "pull the drawer open by its handle"),
    "faucet-open": ("faucet-open-v3", "rotate the faucet handle to turn the water on"),
    "faucet-close": ("faucet-close-v3", "rotate the faucet handle to turn the water off"),
    "hammer": ("hammer-v3", "pick up the hammer and hit the nail into the wall"),
    "handle-press-side": ("handle-press-side-v3", "press the handle down from the side"),
    "handle-press": ("handle-press-v3", "press the handle down"),
    "handle-pull-side": ("handle-pull-side-v3", "pull the handle up from the side"),
    "handle-pull": ("handle-pull-v3", "pull the handle up"),
    "lever-pull": ("lever-pull-v3", "pull the lever up"),
    "pick-place-wall": ("pick-place-wall-v3", "pick up the puck, lift it over the wall and place it at the goal"),
    "pick-out-of-hole": ("pick-out-of-hole-v3", "pick the peg out of the hole and lift it to the goal"),
    "pick-place": ("pick-place-v3", "pick up the puck and place it at the goal position"),
    "plate-slide": ("plate-slide-v3", "slide the plate forward into the cabinet"),
    "plate-slide-side": ("plate-slide-side-v3", "slide the plate sideways into the cabinet"),
    "plate-slide-back": ("plate-slide-back-v3", "slide the plate back out of the cabinet"),
    "plate-slide-back-side": ("plate-slide-back-side-v3", "slide the plate sideways out of the cabinet"),
    "peg-insert-side": ("peg-insert-side-v3", "pick up the peg and insert it sideways into the hole"),
    "peg-unplug-side": ("peg-unplug-side-v3", "pull the peg sideways out of the hole"),
    "soccer": ("soccer-v3", "push the ball into the goal"),
    "stick-push": ("stick-push-v3", "grasp the stick and use it to push the bottle to the goal"),
    "stick-pull": ("stick-pull-v3", "grasp the stick and use it to pull the bottle to the goal"),
    "push": ("push-v3", "push the puck to the goal position"),
    "push-wall": ("push-wall-v3", "push the puck around the wall to the goal position"),
    "push-back": ("push-back-v3", "move the puck backward to the goal position"),
    "reach": ("reach-v3", "move the gripper to the goal position"),
    "reach-wall": ("reach-wall-v3", "reach over the wall to the goal position"),
    "shelf-place": ("shelf-place-v3", "pick up the block and place it on the shelf"),
    "sweep-into": ("sweep-into-v3", "sweep the puck into the hole"),
    "sweep": ("sweep-v3", "sweep the puck off the edge of the table"),
    "window-open": ("window-open-v3", "slide the window open"),
    "window-close": ("window-close-v3", "slide the window closed"),
}

# The tasks the issue names first; `librobot sim expert` defaults to measuring these.
CORE_TASKS = ("reach", "push", "pick-place", "door-open", "drawer-close", "button-press")
