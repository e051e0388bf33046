"""skewless.validate."""
