"""skewless: batch feature platform."""
