#!/usr/bin/env python3
"""Writes the small .npy files under tests/data/npy with NumPy itself, so the C++ reader is
checked against the real writer (including the layouts it must reject)."""
import pathlib
import sys

import numpy as np

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/npy")
out.mkdir(parents=True, exist_ok=True)
np.save(out / "arange_f4_2x3.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
np.save(out / "arange_f2_4.npy", np.arange(4, dtype=np.float16))
np.save(out / "arange_i8_5.npy", np.arange(5, dtype=np.int64))
np.save(out / "mask_b1_2x2.npy", np.array([[True, False], [False, True]]))
np.save(out / "fortran_f4_2x2.npy", np.asfortranarray(np.arange(4, dtype=np.float32).reshape(2, 2).T))
np.save(out / "big_endian_f4.npy", np.arange(3, dtype=">f4"))
