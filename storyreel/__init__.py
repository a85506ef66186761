"""The `storyreel` console script: a thin dispatcher over the four packages' commands."""
