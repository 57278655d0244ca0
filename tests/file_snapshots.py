"""Snapshots of a folder's files, to prove that a failed operation changed nothing."""

import hashlib
import os


def snapshot(directory):
    """Every file under ``directory`` with a hash of its bytes."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out
