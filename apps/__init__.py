"""On-device demo apps (``python apps/webcam.py``): live classification of camera, video and image frames."""
import os

# OpenCV and FFmpeg print their own warnings for every failed open or damaged packet; the apps
# report those conditions themselves as one clear line, so keep the libraries quiet.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when FFmpeg is first used
import cv2  # noqa: E402  (after the FFmpeg setting)

from common.errors import UserError  # noqa: E402

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


class AppError(UserError):
    """A user mistake or unusable input; printed as one ``error: ...`` line, exit status 2."""
