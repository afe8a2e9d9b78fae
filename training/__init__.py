"""vireid.training: models, losses, data readers and the trainer (needs torch for models/training).

Dataset readers, protocols and the synthetic generator are numpy/OpenCV only and import no torch.
"""
