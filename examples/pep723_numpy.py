# /// script
# requires-python = ">=3.9"
# dependencies = ["numpy>=1.24"]
# ///
"""A script that declares its own dependencies (PEP 723 inline metadata): runctl installs them on the machine.

    runctl run examples/pep723_numpy.py
"""

import os

import numpy as np

print(f"numpy {np.__version__} imported from {os.path.dirname(np.__file__)}", flush=True)
print("mean", float(np.arange(10).mean()), flush=True)
