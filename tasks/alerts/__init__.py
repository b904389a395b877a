"""Alerts (预警): cards, the 督办 review, digests and their delivery."""
