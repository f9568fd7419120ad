"""Tests of the media pipeline: containers, census, metadata stripping."""
