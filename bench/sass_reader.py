"""Reading a kernel's machine code without its GPU: Triton compiles for any target (its wheel ships ptxas and
cuobjdump), and this compiles a kernel at a signature and reads the cubin's registers, spills and, for each loop (a
backward branch), how many instructions it issues and which. Used by bench/decode_attention_sass.py and
bench/packed_attention_sass.py."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path


def compile_for(fn, constants: dict, pointers: dict, floats: tuple, options: dict, capability: int):
    """`fn` (a @triton.jit kernel) compiled for sm_<capability> at one signature: `constants` its constexprs,
    `pointers` its pointer arguments' types, `floats` its fp32 scalars and every other argument an i32; pointers
    and integers carry the divisibility-by-16 hint Triton's launcher gives them."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constants:
            signature[name] = "constexpr"
        elif name in floats:
            signature[name] = "fp32"
        else:
            signature[name] = pointers.get(name, "i32")
            attrs[(i,)] = [["tt.divisibility", 16]]
    source = ASTSource(fn=fn, signature=signature, constexprs=constants, attrs=attrs)
    # multiply-adds fused, as a launch compiles them by default; said here, since Triton 3.9 warns when the default
    # is left to it (3.10 is to turn it off, which would make this SASS differ from what the GPU runs today)
    options = {"enable_fp_fusion": True, **options}
    return triton.compile(source, target=GPUTarget("cuda", capability, 32), options=options)


def _tool(name: str) -> str:
    import triton.backends.nvidia as nvidia

    return os.path.join(os.path.dirname(nvidia.__file__), "bin", name)


def _opcode(text: str) -> str:
    """An instruction's opcode, its predicate (@P0, @!UP1, …) left off."""
    return re.sub(r"^@!?U?P\w+\s+", "", text).split()[0]


def loop_mix(cubin: bytes, scratch: Path) -> dict:
    """Registers, register spills (local-memory loads and stores: the whole kernel's, and each loop's), and each
    loop's (backward branch's) instruction count and commonest opcodes, from the SASS."""
    path = scratch / "kernel.cubin"
    path.write_bytes(cubin)
    sass = subprocess.run([_tool("cuobjdump"), "-sass", str(path)], capture_output=True, text=True, check=True).stdout
    usage = subprocess.run([_tool("cuobjdump"), "-res-usage", str(path)], capture_output=True, text=True).stdout
    lines = [(int(a, 16), text.strip()) for a, text in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)]
    loops = []
    for at, text in lines:
        target = re.search(r"BRA (0x[0-9a-f]+)", text)
        if target and int(target.group(1), 16) < at:
            body = [t for a, t in lines if int(target.group(1), 16) <= a <= at]
            ops = collections.Counter(_opcode(t) for t in body)
            spills = sum(n for op, n in ops.items() if op.split(".")[0] in ("LDL", "STL"))
            loops.append({"instructions": len(body), "spills": spills, "opcodes": dict(ops.most_common(12))})
    registers = re.search(r"REG:(\d+)", usage)
    every = collections.Counter(_opcode(t).split(".")[0] for _, t in lines)
    return {
        "registers": int(registers.group(1)) if registers else None,
        "spill_loads": every["LDL"],
        "spill_stores": every["STL"],
        "loops": loops,
    }


def kernel_rows(configs: list, compile_one, key: str) -> list[dict]:
    """One row per config: {key: config, what compile_one adds, shared memory, registers, loops}, each printed as it
    is read. compile_one(config) gives (the compiled kernel, a dict of what the row should also say)."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for config in configs:
            kernel, extra = compile_one(config)
            row = {key: config, **extra, "shared_bytes": kernel.metadata.shared}
            rows.append({**row, **loop_mix(kernel.asm["cubin"], Path(scratch))})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def write_report(prov, configs: list, compile_one, key: str, capability: int, shape: dict, out: Path) -> dict:
    """A SASS tool's JSON: its kernel_rows for `configs`, with the Triton version, the target and the shape they
    were compiled at, written by `prov` (benchmeta.Provenance) to `out`."""
    import triton

    rows = kernel_rows(configs, compile_one, key)
    result = {"triton": triton.__version__, "target": f"sm_{capability}", "shape": shape, "kernels": rows}
    prov.write(result, out)
    return result
