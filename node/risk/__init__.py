"""The risk engine (pure): local reputation, device classes, exposure caps, allocation."""
