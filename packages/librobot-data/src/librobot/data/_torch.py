"""torch, or an error naming the extra that installs it (the Dataset and transforms need it; the
rest of the package does not)."""

from librobot.core.extras import require

torch = require("torch", extra="librobot-data[torch]", purpose="the torch Dataset and image transforms")
