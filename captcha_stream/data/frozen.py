"""Freeze a seeded set of captchas to PNG files + labels.csv, atomically and in parallel.

Image `i` of a set with seed `S` is `Renderer.sample_at(S, i)`: it does not depend on
which process renders it or on the images before it, so 1 or 16 processes give the same
bytes, and `extend` continues the same sequence. A set is built in a hidden temporary
folder beside its destination and renamed into place when complete, so an interrupted
export never leaves a half-written set under the real name.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..atomic import cannot_write_in
from ..config import DataConfig, from_dict
from ..errors import CaptchaStreamError
from .folder import LABELS_NAME, read_labels
from .generator import check_deterministic
from .render import Renderer
from .scheme import CLASS_KNOBS, IMAGE_KNOBS

META_NAME = "set.json"
CHUNK = 32

_worker_renderer: Renderer | None = None


def file_name(index: int) -> str:
    return f"{index:06d}.png"


def _init_worker(data: DataConfig, parent: int | None = None) -> None:
    global _worker_renderer
    if parent is not None:
        _die_with(parent)
    _worker_renderer = Renderer(data)


def _die_with(parent: int) -> None:
    """End this pool worker when the exporting process is gone, however it went (kill -9 included):
    the kernel's parent-death signal on Linux, and a watch on the parent elsewhere."""
    import signal
    import threading
    import time

    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _render_range(args: tuple[str, int, int, int]) -> list[tuple[int, str]]:
    folder, seed, first, stop = args
    assert _worker_renderer is not None
    done = []
    for i in range(first, stop):
        image, label = _worker_renderer.sample_at(seed, i)
        image.save(os.path.join(folder, file_name(i)), format="PNG")
        done.append((i, label))
    return done


def render_range(
    folder: Path, data: DataConfig, seed: int, first: int, stop: int, workers: int, progress: bool = True
) -> dict[int, str]:
    """Render images first..stop-1 into `folder`; returns index -> label."""
    chunks = [(str(folder), seed, a, min(a + CHUNK, stop)) for a in range(first, stop, CHUNK)]
    # More processes than cores or chunks only cost start-up time and memory.
    workers = max(1, min(workers, 2 * (os.cpu_count() or 1), len(chunks)))
    # Everything a worker needs (the fonts above all, or a generator and its contract) is checked
    # here first: a worker's failure would reach the user as a broken pool, not as its cause.
    Renderer(data)
    if data.generator:
        check_deterministic(data.generator, data, seed)
    labels: dict[int, str] = {}
    bar = tqdm(total=stop - first, desc=f"rendering {folder.name}", unit="img", disable=not progress)
    try:
        if workers <= 1:
            _init_worker(data)
            results: Any = map(_render_range, chunks)
            for done in results:
                labels.update(done)
                bar.update(len(done))
        else:
            pool_args = (data, os.getpid())
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=pool_args) as pool:
                try:
                    for done in pool.map(_render_range, chunks):
                        labels.update(done)
                        bar.update(len(done))
                except BrokenProcessPool:
                    raise CaptchaStreamError(
                        f"{folder}: a rendering process died (out of memory, or killed); run again, "
                        "with fewer --workers if it recurs"
                    ) from None
    finally:
        bar.close()
    return labels


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("captcha", "pillow")}


def read_meta(out: Path) -> dict[str, Any] | None:
    path = out / META_NAME
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
        meta["data_config"] = from_dict(DataConfig, meta["data"], "data")
        int(meta["seed"]), int(meta["n"])
    except (ValueError, KeyError, TypeError, CaptchaStreamError) as exc:
        raise CaptchaStreamError(f"{path}: not a valid set description ({exc})") from None
    return meta


def _write_labels(folder: Path, labels: dict[int, str]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["filename", "label"])
    for i in sorted(labels):
        writer.writerow([file_name(i), labels[i]])
    (folder / LABELS_NAME).write_text(buf.getvalue(), encoding="utf-8")


def _write_meta(folder: Path, data: DataConfig, seed: int, n: int) -> None:
    meta = {"seed": seed, "n": n, "data": dataclasses.asdict(data), "versions": versions()}
    (folder / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_folder(out: Path, kind: str) -> Path:
    return out.parent / f".{out.name}.{kind}-{os.getpid()}"


def _remove_stale(out: Path) -> None:
    """Leftovers of an interrupted export (its process is gone) are removed."""
    if not out.parent.is_dir():
        return
    for path in out.parent.glob(f".{out.name}.*-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap_in(tmp: Path, out: Path) -> None:
    """Put `tmp` at `out`; the old `out` stays until the new one is in place."""
    _fsync_tree(tmp)
    if out.exists():
        old = _temp_folder(out, "old")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def export_set(
    out: str | os.PathLike[str],
    n: int,
    data: DataConfig,
    seed: int = 0,
    extend: bool = False,
    force: bool = False,
    workers: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Write (or extend) the frozen set at `out`; returns its path."""
    out = Path(out)
    meta = _prepare_out(out, n, seed)
    workers = workers or os.cpu_count() or 1
    if extend:
        if meta is None:
            raise CaptchaStreamError(f"{out}: no set to extend (missing {META_NAME}); export one first")
        if meta["data_config"] != data:
            raise CaptchaStreamError(f"{out}: was rendered with a different data config; extend with the same --config")
        seed, first = int(meta["seed"]), int(meta["n"])
        _extend(out, n, data, seed, first, workers, progress)
        log(f"extended {out} with {n} images (now {first + n}, seed {seed})")
        return out
    if meta is not None and not force:
        if meta["data_config"] == data and int(meta["seed"]) == seed and int(meta["n"]) == n:
            log(f"{out}: already holds this set (seed {seed}, n {n}); nothing to do")
            return out
        raise CaptchaStreamError(
            f"{out}: holds a different set (seed {meta['seed']}, n {meta['n']}); "
            "use --force to replace it or --extend to add to it"
        )
    if meta is None and out.exists() and any(out.iterdir()) and not force:
        raise CaptchaStreamError(f"{out}: exists and is not an exported set; use --force to replace it")
    tmp = _temp_folder(out, "tmp")
    tmp.mkdir()
    try:
        labels = render_range(tmp, data, seed, 0, n, workers, progress)
        _write_labels(tmp, labels)
        _write_meta(tmp, data, seed, n)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {n} images + {LABELS_NAME} to {out} (seed {seed})")
    return out


MAX_SET = 10**8


def _prepare_out(out: Path, n: int, seed: int) -> dict[str, Any] | None:
    """Check the arguments and the place before any work; the set already there, if any."""
    if n < 1:
        raise CaptchaStreamError(f"--n: must be at least 1, got {n}")
    if n > MAX_SET:
        # A hundred million captchas are about 300 GB of PNGs: past that it is a typo, not a plan.
        raise CaptchaStreamError(f"--n: at most {MAX_SET}, got {n}")
    if not 0 <= seed < 2**63:
        raise CaptchaStreamError(f"--seed: must be in 0..2**63-1, got {seed}")
    if out.exists() and not out.is_dir():
        raise CaptchaStreamError(f"{out}: exists and is not a folder")
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        # A set is swapped in whole, replacing its folder: never the folder this process stands in.
        raise CaptchaStreamError(f"{out}: is the current folder or holds it; export into a folder of its own")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaptchaStreamError(f"{out.parent}: cannot create folder: {exc.strerror}") from None
    refused = cannot_write_in(out.parent)
    if refused:
        # Tried, not asked: root passes os.access on a read-only filesystem.
        raise CaptchaStreamError(f"{out}: cannot write in {out.parent} ({refused})")
    _remove_stale(out)
    return read_meta(out) if out.exists() else None


def _extend(out: Path, n: int, data: DataConfig, seed: int, first: int, workers: int, progress: bool) -> None:
    """Images first..first+n added to the set at `out`, swapped in whole."""
    old_rows = _read_set_labels(out)
    tmp = _temp_folder(out, "tmp")
    tmp.mkdir()
    try:
        for path in out.iterdir():
            if path.name in (LABELS_NAME, META_NAME):
                continue  # rewritten below; linking them would let the rewrite reach the old set
            # Hard links: the new folder shares the earlier files, which are never rewritten.
            try:
                os.link(path, tmp / path.name)
            except OSError:
                shutil.copy2(path, tmp / path.name)
        labels = render_range(tmp, data, seed, first, first + n, workers, progress)
        labels.update(old_rows)
        _write_labels(tmp, labels)
        _write_meta(tmp, data, seed, first + n)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_set_labels(out: Path) -> dict[int, str]:
    rows = read_labels(out / LABELS_NAME)
    labels = {}
    for name, label in rows:
        stem = Path(name).stem
        if not stem.isdigit():
            raise CaptchaStreamError(f"{out / LABELS_NAME}: {name} is not a file name export_fixed_set.py writes")
        labels[int(stem)] = label
    return labels


def ensure_set(
    out: str | os.PathLike[str],
    n: int,
    data: DataConfig,
    seed: int,
    log: Callable[[str], None] = print,
    kind: str = "test",
    key: str = "eval.test_dir",
    forbidden_seed: int | None = None,
    progress: bool = True,
) -> Path:
    """The frozen set at `out`, exported first if it is missing; refuses a mismatched one.

    `kind` and `key` name the set and its config key in messages; a set exported with
    `forbidden_seed` is refused (the validation set must not be a copy of the test set).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CaptchaStreamError(f"{out}: {kind} set is a file, expected a folder; set {key} to another folder")
    meta = read_meta(out) if out.is_dir() else None
    if meta is None:
        if out.is_dir() and (out / LABELS_NAME).is_file():
            return out  # a hand-made labelled folder: trust it
        log(f"{kind} set {out} is missing: exporting {n} images with seed {seed}")
        return export_set(out, n, data, seed=seed, log=log, progress=progress)
    stored: DataConfig = meta["data_config"]
    if (stored.charset, stored.width, stored.height) != (data.charset, data.width, data.height):
        raise CaptchaStreamError(
            f"{out}: {kind} set was rendered for a different charset or size "
            f"({stored.width}x{stored.height}); set {key} to another folder"
        )
    changed = [k for k in (*CLASS_KNOBS, *IMAGE_KNOBS, "generator") if getattr(stored, k) != getattr(data, k)]
    if changed:
        first = changed[0]
        raise CaptchaStreamError(
            f"{out}: {kind} set was rendered with another scheme (data.{first} {getattr(stored, first)!r}, "
            f"not {getattr(data, first)!r}); set {key} to another folder"
        )
    if forbidden_seed is not None and int(meta["seed"]) == forbidden_seed:
        raise CaptchaStreamError(
            f"{out}: {kind} set was exported with seed {forbidden_seed}, the test set's; set {key} to another folder"
        )
    return out
