"""The stage engine: kinds of stage, fingerprints, the up-to-date plan, and running a stage's attempts."""
