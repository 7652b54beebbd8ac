"""A toy world of coloured primitives ("a red cube", ...): renders to train a small bundled text-to-image model on,
and model-independent judges that tell which shape and colour a generated asset shows."""
