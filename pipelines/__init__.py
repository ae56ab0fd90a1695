"""Workflows that compose twiki's stages: the monthly build (snapshot, cron, show_snapshot) and
the LM experiment (lm_experiment, lm_samples), with their presets and systemd units."""
