"""`make image-test`'s parts (scripts/image_test.py): the daemon, the stand-in base, the
checks of each image, the arm64 dependency check and the report."""
