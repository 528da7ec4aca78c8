"""Merge a trained adapter, export it as a 4-bit GGUF (or a GGUF LoRA), and check the runtime's parity."""
