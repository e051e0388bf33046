"""skewless.pit."""
