"""Seeded end-to-end scenarios: realistic offline inputs for `natflow attribute` and their known answers."""
