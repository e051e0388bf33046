"""skewless.offline."""
