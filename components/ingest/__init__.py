"""The ingestion stage: COCO (or a folder of photos) -> a standard Examples artifact + skip report."""
