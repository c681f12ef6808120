"""Offline jobs: training the reader, fitting its calibration, sweeps, adapting it from users' feedback.

They import the library (``rag``) and the evaluation harness; nothing on the request path imports them
(tests/test_layout.py checks both).
"""
