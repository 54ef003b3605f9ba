"""File size and load time: fp32 safetensors vs .tclip 2bit vs base3 for real CLIP shapes.

    python benchmarks/file_size.py --arch ViT-B-16 ViT-B-32 --repeats 5 --json out.json

Random-init open_clip weights, ternarized with scope ``all`` + token embedding (per-row scales).
Load times are medians of interleaved repeats (the machine is noisy; compare ratios).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["ViT-B-16", "ViT-B-32"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    import open_clip
    import torch
    from safetensors.numpy import load_file as load_numpy
    from safetensors.torch import save_file

    import ternaryclip
    from ternaryclip.pack import read
    from ternaryclip.quant import TernaryConfig, ternarize_

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            torch.manual_seed(0)
            model = open_clip.create_model(arch).eval()
            fp32 = Path(tmp) / f"{arch}.safetensors"
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, fp32)
            ternarize_(model, TernaryConfig(scope="all", embedding=True))
            files = {"fp32_safetensors": fp32}
            for packing in ("2bit", "base3"):
                files[f"tclip_{packing}"] = ternaryclip.save(
                    model, Path(tmp) / f"{arch}.{packing}.tclip", packing=packing
                )
            loaders = {"fp32_safetensors": load_numpy, "tclip_2bit": read, "tclip_base3": read}
            times = {k: [] for k in files}
            for _ in range(args.repeats):
                for key, path in files.items():  # interleaved
                    start = time.perf_counter()
                    loaders[key](path)
                    times[key].append(time.perf_counter() - start)
            row = {}
            fp32_size = files["fp32_safetensors"].stat().st_size
            for key, path in files.items():
                size = path.stat().st_size
                row[key] = {
                    "bytes": size,
                    "vs_fp32": fp32_size / size,
                    "load_s_median": statistics.median(times[key]),
                    "load_s_min": min(times[key]),
                }
            results[arch] = row
            print(f"{arch}:")
            for key, r in row.items():
                print(
                    f"  {key:<17} {r['bytes'] / 1e6:8.2f} MB  {r['vs_fp32']:6.2f}x smaller  "
                    f"load {r['load_s_median'] * 1e3:7.1f} ms (median, machine-bound)"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
