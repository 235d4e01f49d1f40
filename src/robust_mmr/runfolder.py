"""A run folder is a record that never lies (DESIGN §5): it says what it holds, it is locked while written, and it
is never silently reused for something else.

- :func:`claim` — before a command writes a run into a folder: the folder's ``run.json`` names its kind (pretrain,
  finetune, export) and its identity (method and config, the data with its manifest hash, ...). A folder that holds
  another kind or identity — or files but no ``run.json`` — is refused with a message, unless ``overwrite`` clears
  it first. The same identity is a resume (pre-training) or a restart (fine-tuning), and is said so.
- :func:`locked` — a lock file with the holder's pid, host and start time while a process writes a folder; a second
  writer is refused, a lock left by a dead process is taken over with a message.
- :func:`write_json` — atomic JSON (a temp file renamed over the target); :func:`file_sha256` for content hashes.
- :func:`refuse_same_path` — an output that is one of the command's inputs is refused before any work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from robust_mmr.errors import InputError

RECORD = "run.json"
LOCK = ".lock"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_identity(data_dir: Path, manifest: str) -> dict:
    """The data a run reads: its folder (absolute) and the sha256 of the manifest it uses."""
    path = Path(data_dir) / manifest
    return {"path": str(Path(data_dir).resolve()), "manifest": manifest,
            "manifest_sha256": file_sha256(path) if path.is_file() else None}


def write_json(path: Path, value: dict) -> None:
    """``value`` as JSON, atomically: a killed writer leaves the old file or the new one, never half of one."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, path)


def read_record(folder: Path) -> dict | None:
    path = Path(folder) / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: unreadable run record ({err}); remove the folder or pass --overwrite") from err


def claim(folder: Path, kind: str, identity: dict, overwrite: bool = False) -> str:
    """Make ``folder`` the record of a ``kind`` run with ``identity`` (JSON values); returns ``new``, ``same`` (the
    folder already holds this run: resume or restart it) or ``cleared`` (``overwrite`` emptied a folder that held
    something else). Anything else in the folder is an :class:`InputError` naming what it holds."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {folder}: exists and is not a folder")
    record = read_record(folder) if folder.is_dir() else None
    wanted = {"kind": kind, "identity": json.loads(json.dumps(identity))}
    if record is not None and record.get("kind") == kind and record.get("identity") == wanted["identity"]:
        return "same"
    contents = [p for p in folder.iterdir() if p.name != LOCK] if folder.is_dir() else []
    if contents and not overwrite:
        if record is None:
            raise InputError(f"{folder} is not empty and is not a robust-mmr run ({len(contents)} entries, no "
                             f"{RECORD}): choose another folder, or pass --overwrite to clear it")
        differs = _differences(record.get("identity", {}), wanted["identity"]) if record.get("kind") == kind else []
        what = (f"a {record.get('kind')} run" if record.get("kind") != kind
                else f"another {kind} run ({', '.join(differs[:6]) or 'its identity'} differ)")
        raise InputError(f"{folder} holds {what}: choose another folder, or pass --overwrite to clear it first")
    status = "cleared" if contents else "new"
    for path in contents:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / RECORD, wanted)
    return status


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested dicts."""
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}")
    return out


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock while the block writes it. Another live holder is an :class:`InputError` naming its
    pid and host; a lock left by a process that no longer runs (on this host) is taken over with a message."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if _alive(holder):
                raise InputError(f"{folder} is being written by process {holder.get('pid')} on {holder.get('host')} "
                                 f"(since {holder.get('started')}); wait for it, or use another folder") from None
            print(f"note: taking over the stale lock of {folder} (process {holder.get('pid')} on "
                  f"{holder.get('host')} is gone)", flush=True)
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(mine, fh)
        break
    try:
        yield
    finally:
        if _holder(lock).get("pid") == mine["pid"]:
            lock.unlink(missing_ok=True)


def _holder(lock: Path) -> dict:
    try:
        return json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _alive(holder: dict) -> bool:
    """Whether the lock's holder still runs: a pid on this host that exists; another host's lock counts as held."""
    if holder.get("host") != socket.gethostname():
        return bool(holder)
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def refuse_same_path(out: Path, inputs: dict[str, Path | str | None]) -> None:
    """An :class:`InputError` when ``out`` is (or resolves to) one of the named inputs."""
    target = Path(out).resolve()
    for name, path in inputs.items():
        if path is not None and str(path) != "scratch" and Path(path).resolve() == target:
            raise InputError(f"--out {out} is the same path as {name}: it would overwrite its own input")
