"""Headless output (an annotated video or folder of images, published by rename) and snapshots."""
from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from apps import AppError
from apps.sources import Frame, Source
from common.outputs import check_output, create_parents, publish, temporary_path

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
DEFAULT_FPS = 30.0  # for cameras and streams that do not report their rate


class VideoSink:
    """Writes an .mp4 (mp4v) or .avi (MJPG) at the source's frame rate; renamed into place by close()."""

    def __init__(self, path: Path, fps: float, force: bool):
        if path.suffix.lower() not in VIDEO_CODECS:
            raise AppError(f"--output {path} must end in .mp4 or .avi for a video or camera source")
        if path.is_dir():
            raise AppError(f"--output {path} is a folder; pass a video file name (.mp4 or .avi)")
        check_output(path, force)
        self.path, self.fps, self.force, self.tmp = path, fps or DEFAULT_FPS, force, temporary_path(path)
        self.writer, self.size, self.count = None, None, 0

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if self.writer is None:
            create_parents(self.path)
            self.size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise AppError(f"cannot write video {self.path}: OpenCV has no {self.path.suffix} writer here")
        if (image.shape[1], image.shape[0]) != self.size:  # streams may change resolution
            image = cv2.resize(image, self.size)
        self.writer.write(image)
        self.count += 1

    def close(self) -> Path | None:
        """Publish the video; None when no frame was written."""
        if self.writer is None:
            return None
        self.writer.release()
        try:
            publish(self.tmp, self.path, self.force)
        finally:
            self.tmp.unlink(missing_ok=True)
        return self.path

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.tmp.unlink(missing_ok=True)


class ImageSink:
    """One annotated image per input, named like the input, in a folder published by close()."""

    def __init__(self, path: Path, force: bool):
        if path.suffix.lower() in VIDEO_CODECS or (path.exists() and not path.is_dir()):
            raise AppError(f"--output {path}: image sources write a folder of images; pass a folder name")
        check_output(path, force, replaceable=Path.is_dir)  # --force writes into it, same names replaced
        self.path, self.tmp, self.count = path, temporary_path(path), 0

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if self.count == 0:
            create_parents(self.path)
            self.tmp.mkdir(exist_ok=True)
        name = frame.name if cv2.haveImageWriter(frame.name) else Path(frame.name).stem + ".png"
        if not cv2.imwrite(str(self.tmp / name), image):
            raise AppError(f"cannot write {self.tmp / name}")
        self.count += 1

    def close(self) -> Path | None:
        """Publish the folder (into an existing one with --force: same names replaced); None if empty."""
        if self.count == 0:
            return None
        if not self.path.exists():
            publish(self.tmp, self.path, force=False)
            return self.path
        for file in self.tmp.iterdir():
            os.replace(file, self.path / file.name)
        self.tmp.rmdir()
        return self.path

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def open_sink(source: Source, output: Path | None, force: bool) -> VideoSink | ImageSink:
    """The sink for ``source``; default path ``<source>_annotated.mp4`` or ``<source>_annotated/``."""
    if source.kind == "video":
        return VideoSink(output or Path(f"{source.stem}_annotated.mp4"), source.fps, force)
    return ImageSink(output or Path(f"{source.stem}_annotated"), force)


def save_snapshot(image: np.ndarray, folder: Path) -> Path:
    """Save ``image`` as ``snapshot_NNN.png`` in ``folder``, never overwriting a file."""
    folder.mkdir(parents=True, exist_ok=True)
    data = cv2.imencode(".png", image)[1].tobytes()
    for n in itertools.count(1):
        path = folder / f"snapshot_{n:03d}.png"
        try:
            with open(path, "xb") as f:
                f.write(data)
            return path
        except FileExistsError:
            continue
