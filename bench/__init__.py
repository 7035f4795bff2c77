"""natflow's benchmark: generated flow logs, natflow against plain baselines (`python -m bench`)."""
