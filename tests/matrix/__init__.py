"""The real-server compatibility matrix: scenarios x servers, generated from a test run."""

from __future__ import annotations
