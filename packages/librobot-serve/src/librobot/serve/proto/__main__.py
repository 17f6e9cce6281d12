"""``python -m librobot.serve.proto``: regenerate the gRPC code in a source checkout."""

from librobot.serve.proto._generate import generate

for path in generate():
    print(f"wrote {path}")
