"""Text prompts: cleaning, length checks, view-dependent variants and their text-encoder embeddings."""
