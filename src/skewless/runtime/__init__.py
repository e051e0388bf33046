"""skewless.runtime."""
