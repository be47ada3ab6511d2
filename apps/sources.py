"""Frame sources (camera, stream, video file, image, image folder) and the capture thread."""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from apps import AppError
from data.image_folder import HEIC, HEIC_ADVICE

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".jp2", ".png", ".pbm", ".pgm", ".ppm", ".pnm", ".tif", ".tiff",
                  ".webp")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
MAX_FAILED_READS = 25  # consecutive failed reads that end a video or stream


@dataclass
class Frame:
    index: int  # position in the source (gaps on live sources are dropped frames)
    name: str  # source name: video file, image file, camera:N or the stream URL
    image: np.ndarray  # BGR uint8


class VideoSource:
    """A camera, stream or video file read with cv2.VideoCapture."""

    kind = "video"

    def __init__(self, target: int | str, name: str, stem: str, live: bool):
        self.name, self.stem, self.live, self.skipped = name, stem, live, 0
        self.cap = cv2.VideoCapture(target)
        if live:
            self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        ok, self._first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok:
            self.cap.release()
            if isinstance(target, int):
                raise AppError(f"no camera at index {target}; to classify a video file instead pass "
                               f"--source path/to/video.mp4")
            what = "stream" if live else "video"
            raise AppError(f"cannot read {what} {target}: OpenCV could not open it or decode a frame")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.length = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else 0

    def frames(self) -> Iterator[Frame]:
        """Every decodable frame; failed reads count as skipped only when more frames follow them."""
        yield Frame(0, self.name, self._first)
        index, failed = 1, 0
        while failed < MAX_FAILED_READS:
            ok, image = self.cap.read()
            if ok:
                self.skipped, failed = self.skipped + failed, 0
                yield Frame(index, self.name, image)
            elif 0 < self.length <= index:
                return  # end of the file
            else:
                failed += 1
            index += 1

    def close(self) -> None:
        self.cap.release()


class ImageSource:
    """One image or the images of a folder (sorted by name); unreadable ones are skipped and counted."""

    kind = "images"
    live = False
    fps = 0.0

    def __init__(self, paths: list[Path], stem: str):
        self.paths, self.stem, self.skipped = paths, stem, 0

    def frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.skipped += 1
            else:
                yield Frame(index, path.name, image)

    def close(self) -> None:
        pass


Source = VideoSource | ImageSource


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def open_source(spec: str) -> Source:
    """Camera index, stream URL, video file, image file or image folder -> an open source."""
    if spec.isdigit():
        return VideoSource(int(spec), f"camera:{spec}", f"camera{spec}", live=True)
    if "://" in spec and spec.split("://", 1)[0].lower() in STREAM_SCHEMES:
        return VideoSource(spec, spec, "stream", live=True)
    path = Path(spec)
    if path.is_dir():
        images = image_files(path)
        if not images:
            heic = any(p.suffix.lower() in HEIC for p in path.iterdir())
            raise AppError(f"no images in folder {path} (looked for {', '.join(IMAGE_SUFFIXES)})"
                           + (f"; it holds HEIC photos, which OpenCV cannot read: {HEIC_ADVICE}" if heic else ""))
        return ImageSource(images, path.resolve().name)
    if not path.is_file():
        raise AppError(f"source {spec} not found; pass a camera index, a video, an image, a folder of "
                       f"images or a stream URL")
    if path.suffix.lower() in HEIC:
        raise AppError(f"cannot read {path}: OpenCV cannot read HEIC photos: {HEIC_ADVICE}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if cv2.imread(str(path), cv2.IMREAD_COLOR) is None:
            raise AppError(f"cannot read image {path}: the file is damaged or not an image")
        return ImageSource([path], path.stem)
    return VideoSource(str(path), path.name, path.stem, live=False)


_END = object()


class Grabber:
    """Reads a source on its own thread so slow inference never stalls capture.

    Live sources keep only the newest frame (stale ones are dropped and counted in ``dropped``);
    files and images queue every frame in order, the reader waiting while the queue is full.
    """

    def __init__(self, source: Source, depth: int = 4):
        self.source, self.dropped = source, 0
        self._queue: queue.Queue = queue.Queue(maxsize=1 if source.live else depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name="capture", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for frame in self.source.frames():
                if self._stop.is_set():
                    break
                self._put(frame)
        except Exception as err:  # surfaced in the main thread by get()
            self._error = err
        self._put(_END)

    def _put(self, item) -> None:
        if self.source.live and item is not _END:
            try:
                self._queue.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass
            self._queue.put_nowait(item)  # the only producer: there is room now
            return
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                pass

    def get(self) -> Frame | None:
        """The next frame (the newest one for live sources), or None at the end of the source."""
        item = self._queue.get()
        if item is _END:
            if self._error is not None:
                raise self._error
            return None
        return item

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():  # never release a capture that a stuck read still uses
            self.source.close()
