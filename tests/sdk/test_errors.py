"""vireid's typed errors."""

from __future__ import annotations


def test_every_vireid_error_survives_pickling() -> None:
    """A synth worker's DatasetError crossed the process pool as 'a worker process died, add a
    __main__ guard': errors with their own __init__ could not be unpickled."""
    import pickle

    import vireid.errors as errors

    samples = [
        errors.DatasetError("/data/x", "OpenCV could not write this image (disk full?)", "cam1/0001/"),
        errors.MissingDependencyError("cv2", "onnx", "Reading video", hint="or install opencv"),
        errors.GalleryError("g.db: locked"),
        errors.InputSpecError("bad"),
    ]
    for error in samples:
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)
    assert pickle.loads(pickle.dumps(samples[0])).path == samples[0].path
