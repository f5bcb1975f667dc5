"""Training: K-fold runs, staged schedules, callbacks, out-of-fold output."""
