"""A COCO detection file made from a shared dataset that ships as Pascal VOC (none ships as COCO).

``raccoon_as_coco`` writes raccoon's VOC boxes as COCO JSON, independently of
the product's converters (so a test can compare the two imports): 1-based
inclusive VOC corners become 0-based ``[x, y, width, height]``, with the one
category under an id other than 0 or 1.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.support.server import DATASETS

RACCOON = DATASETS / "raccoon"
CATEGORY_ID = 7


def raccoon_as_coco(path: Path, limit: int | None = None) -> Path:
    """``path``, written with the first ``limit`` raccoon images (all by default); their files are in
    ``RACCOON / "images"``."""
    images, annotations = [], []
    for image_id, xml in enumerate(sorted((RACCOON / "annotations").glob("*.xml"))[:limit], start=1):
        root = ET.parse(xml).getroot()
        size = root.find("size")
        images.append({"id": image_id, "file_name": root.findtext("filename"),
                       "width": int(size.findtext("width")), "height": int(size.findtext("height"))})
        for obj in root.iter("object"):
            x1, y1, x2, y2 = (float(obj.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": CATEGORY_ID,
                                "bbox": [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1], "iscrowd": 0})
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": CATEGORY_ID, "name": "raccoon"}]}))
    return path
