"""Model compression: quantisation, pruning and distillation of any model's tables and layers.

    quantize.py   row-wise 8/4-bit tables and scoring straight from the codes
    modules.py    drop-in compressed modules and the surgery that swaps them in
    prune.py      dense-layer pruning and merging of rare embedding rows
    distill.py    a small MF student trained on a teacher's soft ranking
    artifact.py   save / rebuild compressed models (safetensors; steps in the header)
    pipeline.py   compress_run: run directory in, compressed run directory out
"""

from liverec.compress.pipeline import METHODS, CompressOptions, compress_run, parse_methods

__all__ = ["METHODS", "CompressOptions", "compress_run", "parse_methods"]
