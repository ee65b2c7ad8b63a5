"""GPU kernels the fast SUTs use (Triton; imported only where a GPU path runs)."""
