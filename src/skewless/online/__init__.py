"""skewless.online."""
