"""Point-in-time training sets."""
