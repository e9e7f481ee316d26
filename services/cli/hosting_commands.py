"""``customlabels start``, ``detect`` and ``stop``: run a trained model and ask it about images.

    customlabels start --project flowers --version v1 --max-units 3 --wait
    customlabels detect photo.jpg s3://my-images/b.jpg --project flowers --version v1 --output boxes/
    customlabels stop --project flowers --version v1 --wait

They speak only the public API (StartProjectVersion, DetectCustomLabels,
StopProjectVersion, DescribeProjectVersions), so they work against any
customlabels server, and against the reference service too.

Wiring (``services/cli/main.py``)::

    hosting_commands.add_commands(commands, connection, _Formatter, lambda args: rekognition(endpoint_of(args)))
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from customlabels.arns import parse_arn
from customlabels.ports.blobs import split_s3_uri

from services.cli.common import Refused, UsageError, endpoint_of, find_project_arn, positive_int

ClientFactory = Callable[[argparse.Namespace], Any]

_COLORS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128))


def add_commands(commands, connection, formatter, make_client: ClientFactory) -> None:
    """Add ``start``, ``detect`` and ``stop`` to ``commands`` (an argparse subparsers object).

    ``connection(default)`` makes the parent parser of the connection options;
    ``make_client(args)`` returns a boto3 ``rekognition`` client for the parsed arguments.
    """
    start = commands.add_parser(
        "start", parents=[connection(argparse.SUPPRESS)], formatter_class=formatter,
        help="start a trained model version (StartProjectVersion)",
        description=(
            "Start serving a trained model version: its inference units come up and it\n"
            "answers DetectCustomLabels once RUNNING. With --max-units it scales between\n"
            "--min-units and --max-units by load. Tag the version with\n"
            "customlabels:scale-to-zero-after-seconds=N to release every unit after N idle\n"
            "seconds (the next request starts one again)."
        ),
        epilog=(
            "Examples:\n"
            "  customlabels start --project flowers --version v1 --wait\n"
            "  customlabels start --project flowers --version v1 --min-units 1 --max-units 3\n"
        ),
    )
    _version_options(start)
    start.add_argument("--min-units", type=positive_int, default=1, help="MinInferenceUnits (default 1)")
    start.add_argument("--max-units", type=positive_int, help="MaxInferenceUnits: autoscale up to this many")
    start.add_argument("--wait", action="store_true", help="wait until RUNNING (or FAILED)")
    start.add_argument("--timeout", type=float, default=600, help="seconds to wait at most (default 600)")
    start.set_defaults(handler=lambda args: run_start(args, make_client(args)))

    detect = commands.add_parser(
        "detect", parents=[connection(argparse.SUPPRESS)], formatter_class=formatter,
        help="find labels (or objects) in images with a running model (DetectCustomLabels)",
        description=(
            "Ask a RUNNING model version about images: local PNG/JPEG files (sent as\n"
            "Image.Bytes) or s3://BUCKET/KEY objects of the server's store (Image.S3Object).\n"
            "Prints one line per label: image, label, confidence (0-100) and, for object\n"
            "localization models, the box as ratios (left, top, width, height).\n"
            "Without --min-confidence each label's assumed threshold from the evaluation\n"
            "applies; --min-confidence 0 returns every label. --output draws the answer\n"
            "into a copy of each image (boxes for detection models, the labels in a corner\n"
            "otherwise)."
        ),
        epilog=(
            "Examples:\n"
            "  customlabels detect rose.jpg --project flowers --version v1\n"
            "  customlabels detect shelf.jpg s3://photos/2.jpg --project parts --version v3 --output out/\n"
            "  customlabels detect board.png --version-arn ARN --min-confidence 40 --json\n"
        ),
    )
    detect.add_argument("images", nargs="+", metavar="IMAGE", help="image files or s3://BUCKET/KEY")
    _version_options(detect)
    detect.add_argument("--min-confidence", type=float, metavar="0-100",
                        help="MinConfidence (default: each label's assumed threshold)")
    detect.add_argument("--max-results", type=int, metavar="N", help="MaxResults")
    detect.add_argument("-o", "--output", type=Path, metavar="PATH",
                        help="draw the answers: a file for one image, a folder for several")
    detect.add_argument("--json", action="store_true", help="print each answer as one JSON line instead")
    detect.set_defaults(handler=lambda args: run_detect(args, make_client(args)))

    stop = commands.add_parser(
        "stop", parents=[connection(argparse.SUPPRESS)], formatter_class=formatter,
        help="stop a running model version (StopProjectVersion)",
        description="Stop a model version's inference units; it answers no more requests.",
        epilog="Example:\n  customlabels stop --project flowers --version v1 --wait\n",
    )
    _version_options(stop)
    stop.add_argument("--wait", action="store_true", help="wait until STOPPED")
    stop.add_argument("--timeout", type=float, default=300, help="seconds to wait at most (default 300)")
    stop.set_defaults(handler=lambda args: run_stop(args, make_client(args)))


def _version_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("which model version")
    group.add_argument("--project", metavar="NAME", help="project name (with --version)")
    group.add_argument("--version", metavar="NAME", help="version name (with --project)")
    group.add_argument("--version-arn", metavar="ARN", help="the version's ARN (instead of --project and --version)")


# --- handlers ----------------------------------------------------------------------------
def run_start(args: argparse.Namespace, rek) -> int:
    arn, project_arn, name = _version(args, rek)
    params = {"ProjectVersionArn": arn, "MinInferenceUnits": args.min_units}
    if args.max_units is not None:
        params["MaxInferenceUnits"] = args.max_units
    print(rek.start_project_version(**params)["Status"])
    if args.wait:
        description = _wait(rek, project_arn, name, "RUNNING", args.timeout, "STARTING", failure="FAILED")
        if description["Status"] != "RUNNING":
            raise Refused(f"{description['Status']}: {description.get('StatusMessage') or 'no reason given'}")
        print(f"RUNNING ({description.get('MinInferenceUnits')}"
              + (f"-{description['MaxInferenceUnits']}" if description.get("MaxInferenceUnits") else "")
              + " inference units)")
    return 0


def run_stop(args: argparse.Namespace, rek) -> int:
    arn, project_arn, name = _version(args, rek)
    print(rek.stop_project_version(ProjectVersionArn=arn)["Status"])
    if args.wait:
        _wait(rek, project_arn, name, "STOPPED", args.timeout, "STOPPING")
        print("STOPPED")
    return 0


def run_detect(args: argparse.Namespace, rek) -> int:
    arn, _, _ = _version(args, rek)
    if args.output is not None and len(args.images) > 1:
        args.output.mkdir(parents=True, exist_ok=True)
    for image in args.images:
        params: dict[str, Any] = {"ProjectVersionArn": arn, "Image": _image_param(image)}
        if args.min_confidence is not None:
            params["MinConfidence"] = args.min_confidence
        if args.max_results is not None:
            params["MaxResults"] = args.max_results
        labels = rek.detect_custom_labels(**params)["CustomLabels"]
        if args.json:
            print(json.dumps({"Image": image, "CustomLabels": labels}))
        elif not labels:
            print(f"{image}\t(no label above the threshold)")
        for label in ([] if args.json else labels):
            box = (label.get("Geometry") or {}).get("BoundingBox")
            where = (f"\tleft={box['Left']:.3f} top={box['Top']:.3f} width={box['Width']:.3f} "
                     f"height={box['Height']:.3f}") if box else ""
            print(f"{image}\t{label['Name']}\t{label['Confidence']:.1f}{where}")
        if args.output is not None:
            target = args.output / (Path(image).stem + "-labels.jpg") if len(args.images) > 1 else args.output
            target.write_bytes(draw(_image_bytes(image, args), labels, target.suffix))
            print(f"drawn: {target}", file=sys.stderr)
    return 0


def _image_param(image: str) -> dict[str, Any]:
    if image.startswith("s3://"):
        location = split_s3_uri(image)
        if location is None:
            raise UsageError(f"error: {image} is not s3://BUCKET/KEY")
        return {"S3Object": {"Bucket": location[0], "Name": location[1]}}
    path = Path(image)
    if not path.is_file():
        raise UsageError(f"error: {image} is not a file")
    return {"Bytes": path.read_bytes()}


def _image_bytes(image: str, args: argparse.Namespace) -> bytes:
    if not image.startswith("s3://"):
        return Path(image).read_bytes()
    from customlabels.client import ObjectClient

    bucket, key = split_s3_uri(image)
    with ObjectClient(endpoint_of(args)) as objects:
        return objects.get(bucket, key)


def draw(data: bytes, labels: list[dict], suffix: str = ".jpg") -> bytes:
    """The image (upright, as the model saw it) with each box and its label drawn in; without boxes
    (a classifier), the labels listed in the top-left corner."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    canvas = ImageDraw.Draw(image)
    width, height = image.size
    font = ImageFont.load_default(size=max(12, min(width, height) // 30))
    line = max(2, min(width, height) // 200)
    corner = 4
    for n, label in enumerate(labels):
        color = _COLORS[n % len(_COLORS)]
        text = f"{label['Name']} {label['Confidence']:.1f}"
        box = (label.get("Geometry") or {}).get("BoundingBox")
        if box:
            left, top = box["Left"] * width, box["Top"] * height
            right, bottom = left + box["Width"] * width, top + box["Height"] * height
            canvas.rectangle((left, top, right, bottom), outline=color, width=line)
            anchor = (left, max(0.0, top - font.size - 2 * line))
        else:
            anchor = (4, corner)
            corner += font.size + 6
        x0, y0, x1, y1 = canvas.textbbox(anchor, text, font=font)
        canvas.rectangle((x0 - 2, y0 - 2, x1 + 2, y1 + 2), fill=color)
        canvas.text(anchor, text, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    image.save(out, "PNG" if suffix.lower() == ".png" else "JPEG", quality=90)
    return out.getvalue()


# --- lookups -------------------------------------------------------------------------------
def _version(args: argparse.Namespace, rek) -> tuple[str, str, str]:
    """(version ARN, project ARN, version name) from --version-arn or --project and --version."""
    if args.version_arn:
        if args.project or args.version:
            raise UsageError("error: give --version-arn, or --project and --version, not both")
        parsed = parse_arn(args.version_arn)
        if parsed is None or parsed.kind != "version":
            raise UsageError(f"error: {args.version_arn!r} is not a model version ARN")
        return args.version_arn, find_project_arn(rek, parsed.project_name), parsed.version_name
    if not (args.project and args.version):
        raise UsageError("error: give --project and --version (or --version-arn)")
    project_arn = find_project_arn(rek, args.project)
    found = rek.describe_project_versions(ProjectArn=project_arn, VersionNames=[args.version])
    if not found["ProjectVersionDescriptions"]:
        raise Refused(f"ResourceNotFoundException: project {args.project} has no version {args.version!r}")
    return found["ProjectVersionDescriptions"][0]["ProjectVersionArn"], project_arn, args.version


def _wait(rek, project_arn: str, name: str, success: str, timeout: float, busy: str,
          failure: str | None = None) -> dict:
    """Poll DescribeProjectVersions until ``success`` (or ``failure``, once ``busy`` was seen: the
    status shown just after the call may still be the one from before it)."""
    deadline = time.monotonic() + timeout
    seen_busy = False
    while True:
        description = rek.describe_project_versions(ProjectArn=project_arn, VersionNames=[name])[
            "ProjectVersionDescriptions"][0]
        status = description["Status"]
        seen_busy = seen_busy or status == busy
        if status == success or (status == failure and seen_busy):
            return description
        if time.monotonic() > deadline:
            raise Refused(f"Timeout: still {status} after {timeout:.0f} s")
        time.sleep(0.5)
