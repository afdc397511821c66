"""The library the scripts at the top share: recipe, data, training steps, checkpoints, scoring, inference."""
