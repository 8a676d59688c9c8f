"""Tests of the developer tools (a package so pytest does not shadow ``devtools``)."""
