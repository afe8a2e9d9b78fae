"""Datasets: SYSU-MM01 and RegDB readers, evaluation protocols, the synthetic generator (numpy/OpenCV)."""
