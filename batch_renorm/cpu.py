"""What the CPU offers the oneDNN kernels TensorFlow runs on it: its speed
flags, less those that ONEDNN_MAX_CPU_ISA (oneDNN's own setting) forbids.
So limited, a CPU with AVX-512 runs the kernels of an AVX2-only one (how
the benchmarks measure a CPU the machine does not have)."""
import os

# The CPU flags that decide our speed and precision (named with figures).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpuinfo(key):
    """The value of the first `key` line of /proc/cpuinfo, or ""."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith(key)), "")
    except OSError:
        return ""
    return line.split(":", 1)[1].strip() if ":" in line else ""


def allowed_flags(max_isa):
    """The SPEED_FLAGS that oneDNN may use under ONEDNN_MAX_CPU_ISA=max_isa
    (e.g. "AVX2", "AVX512_CORE_BF16"; "" or "ALL": all of them)."""
    level = max_isa.strip().upper()
    # oneDNN ignores a value it does not know, as if unset.
    if (level in ("", "ALL", "DEFAULT") or "AMX" in level
            or not level.startswith(("SSE", "AVX"))):
        return set(SPEED_FLAGS)
    if level.startswith(("AVX512", "AVX10")):
        bf16 = "BF16" in level or "FP16" in level or level.startswith("AVX10")
        return {"avx2", "avx512f"} | ({"avx512_bf16"} if bf16 else set())
    return {"avx2"} if level.startswith("AVX2") else set()


def cpu_flags():
    """The SPEED_FLAGS this CPU has and oneDNN may use."""
    present = set(cpuinfo("flags").split()) & set(SPEED_FLAGS)
    return present & allowed_flags(os.environ.get("ONEDNN_MAX_CPU_ISA", ""))


def has_bfloat16():
    """Whether this CPU computes bfloat16 natively (AVX512_BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
