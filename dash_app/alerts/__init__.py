"""Alerts: rules over the shared snapshot, their state, and their notifications."""
