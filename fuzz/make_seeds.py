#!/usr/bin/env python3
"""Writes the hand-written seed inputs of the allocator fuzzer.

The input format is documented at the top of fuzz/allocator_fuzzer.cc and
fuzz/input.h; these seeds give the fuzzer a start in every region: each size
class boundary, every alignment (valid, odd, impossible), realloc growing to
multi-MiB and shrinking to zero, every new/delete form, huge requests to every
function, and migration between CPUs around trims and statistics.

  fuzz/make_seeds.py fuzz/corpus  (rewrites the seed_* files in place)
"""
import os
import sys

(MALLOC, CALLOC, REALLOC, REALLOCARRAY, MEMALIGN, ALIGNED_ALLOC, POSIX_MEMALIGN,
 VALLOC, PVALLOC, NEW, NEW_ALIGNED, RELEASE, USABLE, CHECK, MIGRATE, TRIM,
 STATS) = range(17)
NUM_CLASSES = 97  # allocator/base/size_classes.h: class 0 unused, 96 real classes
NUM_HUGE = 8      # fuzz/input.h kHugeSizes


def tiny(n):
    return [0, n]


def cls(c, delta=0):
    return [1 + 8 * (delta + 1), c - 1]


def u16(n):
    return [2, n & 0xFF, n >> 8]


def large(extra):
    return [4, extra & 0xFF, (extra >> 8) & 0xFF, extra >> 16]


def zero():
    return [5]


def pow2(e, delta=0):
    return [6 + 8 * (delta + 1), e]


def huge(i):
    return [7, i]


def align_pow2(e):
    return [e]


def align_odd(i):
    return [0xF0 + i]


def class_sweep(first, last):
    """Every class size -1, +0, +1 from `first` to `last`: <= 1 KiB each."""
    out = []
    for c in range(first, last + 1):
        for delta in (-1, 0, 1):
            slot = (c * 3 + delta) % 32
            out += [MALLOC, slot] + cls(c, delta) + [RELEASE, slot, c % 2]
    return out


def alignments():
    out = []
    for e in range(23):
        s = e % 32
        out += [ALIGNED_ALLOC, s] + align_pow2(e) + tiny(e * 7)
        out += [MEMALIGN, (s + 1) % 32] + align_pow2(e) + cls(1 + e * 4)
        out += [POSIX_MEMALIGN, (s + 2) % 32] + align_pow2(e) + pow2(e, 1)
        out += [RELEASE, s, 1, RELEASE, (s + 1) % 32, 0]
    for i in range(16):
        for op in (ALIGNED_ALLOC, MEMALIGN, POSIX_MEMALIGN):
            out += [op, i] + align_odd(i) + tiny(40)
    out += [VALLOC, 3] + tiny(1) + [PVALLOC, 4] + zero() + [PVALLOC, 5] + u16(4097)
    return out


def realloc_chain():
    out = [MALLOC, 0] + tiny(1)
    for e in range(1, 23):
        out += [REALLOC, 0] + pow2(e, 1)
    out += [REALLOC, 0] + large(0x300000)
    for e in range(22, 0, -3):
        out += [REALLOC, 0] + pow2(e, -1)
    out += [REALLOC, 0] + zero()
    out += [REALLOCARRAY, 1, 3] + cls(40) + [REALLOCARRAY, 1, 0xE5, 0x10, 0x00] + tiny(200)
    return out


def new_forms():
    out = []
    for form in range(4):
        for method in range(3):
            s = form * 3 + method
            out += [NEW, s, form] + cls(10 + s * 5)
            out += [NEW_ALIGNED, s + 12, form] + align_pow2(5 + s) + tiny(s * 11)
            out += [RELEASE, s, method, RELEASE, s + 12, method]
    return out


def huge_everything():
    out = []
    for i in range(NUM_HUGE):
        out += [MALLOC, i] + huge(i)
        out += [CALLOC, i, 0xF0 + i] + tiny(16)
        out += [REALLOC, i] + huge(i)
        out += [MEMALIGN, i] + align_pow2(6) + huge(i)
        out += [ALIGNED_ALLOC, i] + align_pow2(12) + huge(i)
        out += [POSIX_MEMALIGN, i] + align_pow2(4) + huge(i)
        out += [VALLOC, i] + huge(i) + [PVALLOC, i] + huge(i)
        out += [NEW, i, i % 4] + huge(i)
        out += [NEW_ALIGNED, i, i % 4] + align_pow2(7) + huge(i)
    return out


def migrate_trim_stats():
    out = []
    for r in range(6):
        out += [MIGRATE, r]
        for s in range(8):
            out += [MALLOC, s + 8 * (r % 4)] + (large(s * 5000) if s == 7 else cls(1 + s * 11))
        out += [STATS, MIGRATE, r + 1]
        for s in range(0, 8, 2):
            out += [RELEASE, s + 8 * (r % 4), s]
        out += [TRIM, CHECK, 7 + 8 * (r % 4), STATS]
    out += [CALLOC, 9, 12] + u16(3000) + [CALLOC, 10, 0xE1, 0x00, 0x01] + tiny(0)
    return out


SEEDS = {
    "class_sweep_low": lambda: class_sweep(1, 48),
    "class_sweep_high": lambda: class_sweep(49, NUM_CLASSES - 1),
    "alignments": alignments,
    "realloc_chain": realloc_chain,
    "new_forms": new_forms,
    "huge_everything": huge_everything,
    "migrate_trim_stats": migrate_trim_stats,
}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    os.makedirs(sys.argv[1], exist_ok=True)
    for name, make in SEEDS.items():
        data = bytes(make())
        with open(os.path.join(sys.argv[1], "seed_" + name), "wb") as f:
            f.write(data)
        print(f"seed_{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
