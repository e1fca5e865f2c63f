"""The kernel every app may import: small modules with no dependency on the project package."""
