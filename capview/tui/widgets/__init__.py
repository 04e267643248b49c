"""Widgets, split by area (posting style); each defines the messages it sends."""
