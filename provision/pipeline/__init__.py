"""The image pipeline: recipes rendered to build contexts, built on a builder, pushed, turned into SIF files."""
