"""The one verifying reader, resumable hashing, partial files, checkpoints and atomic files."""
