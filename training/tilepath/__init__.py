"""Parts of the tile-path evaluation (``python -m training.evaluate_tiles``): coarse scenes,
tile selection, the tile server it scores through, and the report."""
