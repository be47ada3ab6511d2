"""Long passes of the slow reference engines say how long they will take and how far they are."""
import numpy as np

from runtime import progress


def fake_engine(monkeypatch, seconds_per_image):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])

    def run(x):
        clock[0] += seconds_per_image * len(x)
        return x[:, :1] * 2
    return run


def test_a_long_pass_gives_an_estimate_then_progress(monkeypatch, capsys):
    x = np.arange(1008, dtype=np.float32)[:, None]
    out = progress.run_with_progress(fake_engine(monkeypatch, 9.0), x, "coreai-runtime")
    np.testing.assert_array_equal(out, x * 2)  # every image once, in order
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "coreai-runtime: 1008 images at 9.00 s each, about 2 h 31 min"
    assert len(lines) == 1 + 10 and lines[1] == "coreai-runtime: 104/1008 images, about 2 h 15 min left"
    assert lines[-1].startswith("coreai-runtime: 1004/1008 images, about 36 s left")


def test_a_short_pass_says_nothing(monkeypatch, capsys):
    x = np.arange(1008, dtype=np.float32)[:, None]
    out = progress.run_with_progress(fake_engine(monkeypatch, 0.05), x, "mlprogram-numpy")  # 50 s
    np.testing.assert_array_equal(out, x * 2)
    assert capsys.readouterr().err == ""
    assert progress.duration(59.6) == "1 min 0 s" and progress.duration(3725) == "1 h 2 min"
