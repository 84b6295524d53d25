"""The online side: reads a published model directory and answers recommendation calls.

Serving depends on `recsys` and on the model directory on disk, never on `training`.
"""
