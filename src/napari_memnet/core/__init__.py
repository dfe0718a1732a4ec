"""Pure-numpy foundations shared by every layer: axes, intensities, tiles, devices, the task registry, colour, resizing, JPEG, metrics and atomic writes."""
