"""The ingestion stage: COCO (or a folder of photos) -> a standard Examples artifact + skip report.

Custom properties of its output artifact that the run summary prints (set by executor.py): the first
IGNORED_RECORDED entries of the data root that are no snapshot ({name: reason}, JSON) and how many
there are; the skip report holds them all.
"""
IGNORED_PROPERTY = "ignored_folders"
IGNORED_COUNT_PROPERTY = "ignored_folder_count"
IGNORED_RECORDED = 10
