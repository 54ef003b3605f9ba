"""`ternaryclip bench`: the ternary runtime against open_clip fp32 on the same weights, side by side."""

from __future__ import annotations

import argparse
import sys

from ..bench.ort_int8 import DEFAULT_METHOD as ORT_INT8_DEFAULT
from ..bench.ort_int8 import METHODS as ORT_INT8_METHODS
from ..bench.run import DEFAULT_ENGINES, EngineError
from ..choices import MODES
from .model_args import positive_int

ORT_INT8_OTHER = next(m for m in ORT_INT8_METHODS if m != ORT_INT8_DEFAULT)
HELP = "speed, memory and size vs open_clip fp32 (ratios measured in one run)"
DESCRIPTION = """\
Encode images and texts with open_clip fp32 and the ternaryclip runtime (exact and fast modes), each in its
own process, interleaved; print latency ratios, throughput, peak RSS, file size and embedding cosine vs
fp32.
"""


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=HELP, description=DESCRIPTION)
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--arch", default="ViT-B-16", help="open_clip architecture (random init, ternarized) or a JSON model config"
    )
    src.add_argument("--model", help="a .tclip file (compared with its own float twin)")
    p.add_argument("--batch", default="1,32", help="comma-separated batch sizes")
    p.add_argument("--threads", type=positive_int, help="threads for every engine (default: all cores)")
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument(
        "--engines",
        default=",".join(DEFAULT_ENGINES),
        help="comma-separated: open_clip_fp32, torch_int8_dynamic, onnxruntime_fp32, onnxruntime_2bit "
        "(MatMulNBits, 2-bit codes, accuracy_level 4), onnxruntime_int8 (onnxruntime.quantization, the faster "
        f"method on a Zen 4: {ORT_INT8_DEFAULT}), onnxruntime_int8_{ORT_INT8_OTHER}, ternaryclip_exact, ternaryclip_fast, "
        "ternaryclip_bf16 (bf16 activations: AMX-BF16 where the CPU has it) "
        "(torch_int8_dynamic loads the fp32 weights; its file size is theirs); with the openvino extra also "
        "openvino_fp32 (f32 forced), openvino_bf16 (OpenVINO's default; only on CPUs with bf16) and "
        "openvino_int8 (NNCF post-training quantization), all converted with OpenVINO's PyTorch frontend",
    )
    p.add_argument("--json", help="write the full report here")
    p.add_argument("--plot", help="write a PNG chart of the ratios here (needs matplotlib)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="instead: where the runtime's time goes per op class (GEMM, attention, norms, activation, glue) "
        "for both towers, in one process (--mode picks the runtime mode)",
    )
    p.add_argument("--mode", choices=MODES, default="fast", help="runtime mode for --profile")
    p.add_argument(
        "--kernels",
        action="store_true",
        help="instead: ternary GEMM GOPS per core on CLIP's linear shapes (M in 1, 77, 197) vs torch fp32 "
        "and torch dynamic int8, single thread and all threads",
    )


def run(args: argparse.Namespace) -> int:
    from ..bench.report import format_table, plot, write_json
    from ..bench.run import run_bench

    if args.kernels:
        from ..bench.kernels import run_kernel_bench

        report = run_kernel_bench(threads=args.threads, repeats=args.repeats)
        if args.json:
            write_json(report, args.json)
        return 0

    batches = tuple(int(b) for b in args.batch.split(",") if b)
    if not batches or min(batches) < 1:
        raise ValueError("--batch needs positive batch sizes, e.g. 1,32")
    if args.profile:
        from ..bench.profile import format_profile, run_profile

        arch = None if args.model else args.arch
        report = run_profile(arch, args.model, batches, args.threads, args.repeats, args.mode)
        print(format_profile(report))
        if args.json:
            write_json(report, args.json)
        return 0
    try:
        report = run_bench(
            arch=None if args.model else args.arch,
            model=args.model,
            batches=batches,
            threads=args.threads,
            repeats=args.repeats,
            engines=tuple(args.engines.split(",")),
        )
    except EngineError as err:  # e.g. an engine whose library refuses this CPU or environment
        from . import one_line

        print(f"ternaryclip bench: error: {one_line(err)}", file=sys.stderr)
        return 1
    print(format_table(report))
    if args.json:
        write_json(report, args.json)
    if args.plot:
        plot(report, args.plot)
    return 0
