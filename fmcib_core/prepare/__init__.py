"""From public datasets and segmentation masks to lesion tables (docs/method.md section 8).

One module per converter, each writing its outputs only through ``fmcib_core.io.atomic_path``,
reporting every problem of a dataset together and counting every skipped lesion in a summary:

- ``seeds``: seeds from masks (label maps, DICOM-SEG, RTSTRUCT);
- ``deeplesion``: DeepLesion (``DL_info.csv`` and its PNG slices) -> pretraining and Task 1;
- ``lung1``: NSCLC-Radiomics (LUNG1) DICOM + RTSTRUCT + clinical CSV -> Task 3;
- ``luna16``: LUNA16 scans + LIDC-IDRI annotations -> Task 2 (``lidc`` reads the annotations).

Shared parts: ``report`` (problems, summaries, output folders), ``geometry`` (grids, centroids,
polygons), ``dicom`` (indexing by UIDs, series, SEG, RTSTRUCT) and ``splits``.
"""
