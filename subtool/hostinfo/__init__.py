"""What this machine is (CPU, memory, DIMMs, storage, network, GPUs), each value with where it came from.

A shared module, not a stage: packaging describes the host it runs on with it, and a Ray run asks every node of
its cluster for the same description (runner/ray_pool.py), which packaging merges (package/system_merge.py).
Light: psutil, pynvml and amdsmi where installed, else /proc, /sys and a few commands; never torch."""
