"""The ``customlabels`` command: run a customlabels server and work with it, from import to export.

Run ``customlabels --help`` (or ``customlabels <command> --help``) for the details.
Exit codes: 0 done, 1 the service said no (or could not be reached), 2 bad usage.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from customlabels.client import DEFAULT_REGION, DEFAULT_URL, ObjectClient, ObjectStoreError, rekognition, review_client
from customlabels.config import ENVIRONMENT, SERVICE_NAMES
from customlabels.manifests import converters
from services.cli import backup, hosting_commands, loops, manage, training_commands
from services.cli.common import CliError, UsageError, endpoint_of, positive_int, progress_bar
from services.cli.imports import ImportOptions, describe_conversion, run_import

DEFAULT_BUCKET = "customlabels-images"

OVERVIEW = f"""\
Train and serve your own image models behind the Rekognition Custom Labels API.

The workflow, one command per step:
  serve                      run the server (or `make run`)
  import-folder, import-voc, import-coco, import-yolo
                             labeled images in: a folder per label, Pascal VOC, COCO or
                             YOLO boxes become a project's TRAIN (or TEST) dataset
  train --wait               train a model version; prints the version's name, then F1
  start --wait, detect, stop run the model and ask it about images
  export                     download model.onnx and model.json to run it anywhere
  projects, datasets, versions
                             list, describe or delete what the server holds
  backup, restore            copy the data folder while the server runs; restore it

Every client command speaks the public API, so boto3 and the AWS CLI see the same
resources. The server is found through --endpoint-url or CUSTOMLABELS_ENDPOINT
(default {DEFAULT_URL}); credentials come from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (default: the development pair the server accepts out of the box).
"""

OVERVIEW_EXAMPLES = """\
Examples:
  customlabels serve
  customlabels import-folder ./flowers --project flowers --create-project
  customlabels import-voc ./bccd --split train --project cells --create-project
  customlabels import-yolo ./coco8 --split train --project parts --create-project
  customlabels train --project flowers --version v1 --wait
  customlabels start --project flowers --version v1 --wait
  customlabels detect photo.jpg --project flowers --version v1
  customlabels export --project flowers --version v1 -o ./model
  customlabels versions list --project flowers
  customlabels backup --to ../customlabels-backup
  customlabels --endpoint-url http://gpu-box:8080 upload ./photos --bucket my-images
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable line
        message, code = _explain(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return code


def _explain(exc: Exception) -> tuple[str | None, int]:
    """One line and an exit code for the failures a user can act on; (None, _) otherwise."""
    if isinstance(exc, CliError):
        return _one_line(str(exc)), exc.exit_code
    if isinstance(exc, converters.ConversionError):
        return _one_line(f"error: {exc}"), 2
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return _one_line(f"{error.get('Code', 'Error')}: {error.get('Message', str(exc))}"), 1
    if isinstance(exc, ParamValidationError):
        return _one_line(f"ParamValidationError: {exc}"), 2
    if isinstance(exc, ObjectStoreError):
        return _one_line(str(exc) + _unreachable_hint(exc.code)), 1
    if isinstance(exc, BotoCoreError):
        name = type(exc).__name__
        return _one_line(f"{name}: {exc}" + _unreachable_hint(name)), 1
    return None, 1


def _unreachable_hint(code: str) -> str:
    if code in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return " (is the server running? see --endpoint-url / CUSTOMLABELS_ENDPOINT)"
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- parser -------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep our line breaks in descriptions and examples."""


def build_parser() -> argparse.ArgumentParser:
    connection = _connection_options()
    parser = argparse.ArgumentParser(
        prog="customlabels",
        description=OVERVIEW,
        epilog=OVERVIEW_EXAMPLES,
        formatter_class=_Formatter,
        parents=[connection(argparse.SUPPRESS)],
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    imports = _import_options()
    _add_serve(commands)
    _add_upload(commands, connection)
    _add_import_folder(commands, connection, imports)
    _add_import_voc(commands, connection, imports)
    _add_import_coco(commands, connection, imports)
    _add_import_yolo(commands, connection, imports)
    training_commands.add_commands(commands, connection, _Formatter)
    hosting_commands.add_commands(commands, connection, _Formatter, lambda args: rekognition(endpoint_of(args)))
    loops.add_commands(commands, connection, _Formatter, lambda args: review_client(endpoint_of(args)))
    manage.add_commands(commands, connection, _Formatter, lambda args: rekognition(endpoint_of(args)))
    backup.add_commands(commands, _Formatter)
    return parser


def _connection_options():
    """Global options, accepted before or after the command name.

    Subcommand copies default to SUPPRESS so that a value given before the
    command is not overwritten by the subcommand's default.
    """

    def make(default) -> argparse.ArgumentParser:
        options = argparse.ArgumentParser(add_help=False)
        group = options.add_argument_group("connection")
        group.add_argument(
            "--endpoint-url", metavar="URL", default=default,
            help=f"server URL (env CUSTOMLABELS_ENDPOINT, default {DEFAULT_URL})",
        )
        group.add_argument(
            "--region", default=default,
            help=f"region to sign requests for (env AWS_DEFAULT_REGION, default {DEFAULT_REGION})",
        )
        return options

    return make


def _import_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("where the images go")
    group.add_argument("--project", required=True, metavar="NAME", help="project to import into (required)")
    group.add_argument(
        "--dataset", choices=("train", "test"), default="train",
        help="which of the project's datasets receives the images (default: train)",
    )
    group.add_argument(
        "--create-project", action="store_true",
        help="create the project when it does not exist yet (otherwise that is an error)",
    )
    group.add_argument(
        "--bucket", default=DEFAULT_BUCKET,
        help=f"object-store bucket for the images and the manifest (default: {DEFAULT_BUCKET})",
    )
    group.add_argument(
        "--prefix", metavar="P",
        help="key prefix for the uploaded files (default: <project>/<dataset>/); "
             "the manifest goes to <prefix>manifests/<timestamp>.manifest",
    )
    tuning = options.add_argument_group("running")
    tuning.add_argument("--workers", type=positive_int, default=8, help="parallel uploads (default: 8)")
    tuning.add_argument(
        "--timeout", type=float, default=1800, metavar="SECONDS",
        help="how long to wait for the server to check the dataset (default: 1800)",
    )
    tuning.add_argument(
        "--dry-run", action="store_true",
        help="only convert: print the manifest lines to stdout, contact no server",
    )
    return options


def _add_serve(commands) -> None:
    serve = commands.add_parser(
        "serve", help="run a customlabels server in this process",
        description=(
            "Run the customlabels server (API, object store and workers) in this process, on\n"
            "http://127.0.0.1:8080 by default. It reads these environment variables:\n\n" + _settings_help()
        ),
        epilog="Example:\n  CUSTOMLABELS_PORT=9000 CUSTOMLABELS_DATA=/srv/customlabels customlabels serve\n",
        formatter_class=_Formatter,
    )
    serve.set_defaults(handler=_serve)

    service = commands.add_parser(
        "service", help="run one customlabels service in this process (distributed mode)",
        description=(
            "Run a single service: gateway (the public API on CUSTOMLABELS_PORT), or projects,\n"
            "datasets, training, evaluation or hosting (their internal API, /healthz and\n"
            "/readyz). Each reaches the others at CUSTOMLABELS_<SERVICE>_URL and uses\n"
            "Kafka, MongoDB and S3 when\n"
            "CUSTOMLABELS_KAFKA_BOOTSTRAP, CUSTOMLABELS_MONGODB_URI and CUSTOMLABELS_S3_ENDPOINT\n"
            "are set (see the README). Run any number of replicas of each."
        ),
        epilog=(
            "Example:\n"
            "  CUSTOMLABELS_PORT=8081 customlabels service projects\n"
            "  CUSTOMLABELS_PROJECTS_URL=http://127.0.0.1:8081 CUSTOMLABELS_DATASETS_URL=http://127.0.0.1:8082 \\\n"
            "    customlabels service gateway\n"
        ),
        formatter_class=_Formatter,
    )
    service.add_argument("name", choices=SERVICE_NAMES,
                         help="the service to run")
    service.set_defaults(handler=_service)


def _settings_help() -> str:
    """The settings table (``customlabels.config.ENVIRONMENT``), one variable per line."""
    width = max(map(len, ENVIRONMENT))
    return "\n".join(f"  {name:{width}}  {meaning}" for name, meaning in ENVIRONMENT.items())


def _add_upload(commands, connection) -> None:
    upload = commands.add_parser(
        "upload", parents=[connection(argparse.SUPPRESS)], formatter_class=_Formatter,
        help="upload files or folders to the server's object store",
        description=(
            "Upload files to the server's object store, where manifest lines can refer to\n"
            "them as s3://BUCKET/KEY. A file becomes PREFIX + its name; a folder is uploaded\n"
            "recursively, each file becoming PREFIX + its path inside that folder (hidden\n"
            "files are skipped). Prints one s3:// URI per uploaded file."
        ),
        epilog=(
            "Example:\n"
            "  customlabels upload ./photos cover.jpg --bucket my-images --prefix holiday/\n"
            "  # photos/beach/1.jpg -> s3://my-images/holiday/beach/1.jpg\n"
            "  # cover.jpg          -> s3://my-images/holiday/cover.jpg\n"
        ),
    )
    upload.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", type=Path, help="files and folders to upload")
    upload.add_argument("--bucket", required=True, help="bucket to upload into (created on first upload)")
    upload.add_argument("--prefix", default="", metavar="P", help="key prefix (default: none)")
    upload.add_argument("--workers", type=positive_int, default=8, help="parallel uploads (default: 8)")
    upload.set_defaults(handler=_upload)


def _add_import_folder(commands, connection, imports) -> None:
    command = commands.add_parser(
        "import-folder", parents=[connection(argparse.SUPPRESS), imports], formatter_class=_Formatter,
        help="import a classification dataset laid out as one folder per label",
        description=(
            "Import images labeled by the folder they are in: DIR/daisy/1.jpg is labeled\n"
            "'daisy' (the folder directly holding an image names its label). Only .jpg,\n"
            ".jpeg and .png files are imported; anything else is skipped with a warning.\n"
            "Each image gets one image-level label, written the way the Rekognition console\n"
            "writes folder labels (attribute named after the label, job-name\n"
            "labeling-job/<label>)."
        ),
        epilog=(
            "Example:\n"
            "  customlabels import-folder ./flowers --project flowers --create-project\n"
            "  customlabels import-folder ./flowers-test --project flowers --dataset test\n"
        ),
    )
    command.add_argument("directory", metavar="DIR", type=Path, help="folder holding one sub-folder per label")
    command.add_argument(
        "--attribute", metavar="NAME",
        help="use this fixed label attribute name instead of one named after each label",
    )
    command.set_defaults(handler=_import_folder)


def _add_import_voc(commands, connection, imports) -> None:
    command = commands.add_parser(
        "import-voc", parents=[connection(argparse.SUPPRESS), imports], formatter_class=_Formatter,
        help="import Pascal VOC XML bounding boxes",
        description=(
            "Import Pascal VOC annotations as bounding boxes (or, with --as-labels, as\n"
            "image-level labels: one per class present, so images can be multi-label).\n"
            "Layouts understood:\n"
            "  DIR/Annotations/*.xml + DIR/JPEGImages/   (VOC, BCCD)\n"
            "  DIR/annotations/*.xml + DIR/images/       (raccoon)\n"
            "  XML files beside their images anywhere below DIR\n"
            "The image is the file an XML's <filename> names, else the one with the XML's\n"
            "name. VOC corners are 1-based and inclusive; they become left=xmin-1,\n"
            "top=ymin-1, width=xmax-xmin+1, height=ymax-ymin+1. Boxes are not corrected:\n"
            "the server reports bad ones per image."
        ),
        epilog=(
            "Example:\n"
            "  customlabels import-voc ./bccd --split train --project cells --create-project\n"
            "  customlabels import-voc ./bccd --split test --dataset test --project cells\n"
            "  customlabels import-voc ./microcontroller/train --project boards --create-project\n"
        ),
    )
    command.add_argument("directory", metavar="DIR", type=Path, help="dataset folder")
    command.add_argument(
        "--split", metavar="NAME",
        help="only the images listed in DIR/ImageSets/Main/NAME.txt (train, val, test, trainval), "
             "or, without such a file, those in the folder DIR/NAME",
    )
    _add_label_options(command)
    command.set_defaults(handler=_import_voc)


def _add_import_coco(commands, connection, imports) -> None:
    command = commands.add_parser(
        "import-coco", parents=[connection(argparse.SUPPRESS), imports], formatter_class=_Formatter,
        help="import COCO detection JSON bounding boxes",
        description=(
            "Import a COCO object-detection file (images, annotations with\n"
            "bbox [x, y, width, height], categories). Each image's file_name is read from\n"
            "--images and keeps that relative path under --prefix. Boxes are passed on\n"
            "unchanged; with --as-labels they become image-level labels instead."
        ),
        epilog=(
            "Example:\n"
            "  customlabels import-coco instances_train.json --images ./train2017 \\\n"
            "      --project shelves --create-project\n"
        ),
    )
    command.add_argument("annotations", metavar="ANNOTATIONS.json", type=Path, help="COCO annotations file")
    command.add_argument(
        "--images", required=True, metavar="DIR", type=Path, help="folder the file_names are relative to"
    )
    _add_label_options(command)
    command.set_defaults(handler=_import_coco)


def _add_import_yolo(commands, connection, imports) -> None:
    command = commands.add_parser(
        "import-yolo", parents=[connection(argparse.SUPPRESS), imports], formatter_class=_Formatter,
        help="import YOLO (Ultralytics) bounding boxes",
        description=(
            "Import a dataset in the Ultralytics YOLO layout: data.yaml names the classes\n"
            "(names: [...] or {0: ...}; classes.txt also works), images under images/...,\n"
            "and for each image a labels/.../<name>.txt with one 'class cx cy w h' line per\n"
            "object, relative to the image's size (a segmentation polygon becomes its box).\n"
            "Boxes become pixels of the real image; an image without a label file has no\n"
            "objects. With --as-labels the classes present become image-level labels."
        ),
        epilog=(
            "Example:\n"
            "  customlabels import-yolo ./coco8 --split train --project parts --create-project\n"
            "  customlabels import-yolo ./coco8 --split val --dataset test --project parts\n"
        ),
    )
    command.add_argument("directory", metavar="DIR", type=Path, help="dataset folder (holding data.yaml)")
    command.add_argument(
        "--split", metavar="NAME",
        help="only the images data.yaml lists under NAME (train, val, test), else those in DIR/images/NAME",
    )
    _add_label_options(command)
    command.set_defaults(handler=_import_yolo)


def _add_label_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--as-labels", action="store_true",
        help="import one image-level label per class present instead of boxes (a multi-label classifier)",
    )
    command.add_argument(
        "--attribute", metavar="NAME",
        help="manifest attribute for boxes (default: bounding-box); with --as-labels, "
             "a prefix for the label attributes (default: one attribute named after each label)",
    )


# --- command handlers ---------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    # Imported on use: the server pulls in heavy dependencies the other commands never need.
    from services.runtime import run_embedded

    run_embedded()
    return 0


def _service(args: argparse.Namespace) -> int:
    from services.runtime import run_service

    run_service(args.name)
    return 0


def _upload(args: argparse.Namespace) -> int:
    prefix = converters.normalize_prefix(args.prefix)
    items = _upload_items(args.paths, prefix)
    endpoint = endpoint_of(args)
    bar = progress_bar(total=len(items), desc=f"Uploading to s3://{args.bucket}", unit="file")
    with ObjectClient(endpoint) as objects, bar:
        answers = objects.put_many(args.bucket, items, workers=args.workers, progress=lambda _a: bar.update(1))
    for answer in answers:
        print(f"s3://{answer.get('Bucket', args.bucket)}/{answer.get('Key')}")
    total = sum(answer.get("Size", 0) for answer in answers)
    print(f"Uploaded {len(answers)} files ({total / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def _upload_items(paths: list[Path], prefix: str) -> list[tuple[str, Path]]:
    items: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            found = [(prefix + f.relative_to(path).as_posix(), f) for f in converters.files_under(path)]
        elif path.is_file():
            found = [(prefix + path.name, path)]
        else:
            raise UsageError(f"error: {path} does not exist")
        for key, file in found:
            if key in items:
                raise UsageError(f"error: {items[key]} and {file} would both be uploaded as {key}")
            items[key] = file
    if not items:
        raise UsageError("error: nothing to upload")
    return list(items.items())


def _import_folder(args: argparse.Namespace) -> int:
    conversion = converters.folder_classification(
        args.directory, bucket=args.bucket, prefix=_import_prefix(args), attribute=args.attribute
    )
    return _import(args, conversion)


def _import_voc(args: argparse.Namespace) -> int:
    conversion = converters.voc_detection(
        args.directory, bucket=args.bucket, prefix=_import_prefix(args), split=args.split,
        as_labels=args.as_labels, attribute=args.attribute,
    )
    return _import(args, conversion)


def _import_coco(args: argparse.Namespace) -> int:
    conversion = converters.coco_detection(
        args.annotations, args.images, bucket=args.bucket, prefix=_import_prefix(args),
        as_labels=args.as_labels, attribute=args.attribute,
    )
    return _import(args, conversion)


def _import_yolo(args: argparse.Namespace) -> int:
    conversion = converters.yolo_detection(
        args.directory, bucket=args.bucket, prefix=_import_prefix(args), split=args.split,
        as_labels=args.as_labels, attribute=args.attribute,
    )
    return _import(args, conversion)


def _import_prefix(args: argparse.Namespace) -> str:
    prefix = args.prefix if args.prefix is not None else f"{args.project}/{args.dataset}/"
    return converters.normalize_prefix(prefix)


def _import(args: argparse.Namespace, conversion: converters.Conversion) -> int:
    for warning in conversion.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not conversion.entries:
        raise UsageError("error: no images found to import")
    print(describe_conversion(conversion), file=sys.stderr)
    if args.dry_run:
        sys.stdout.buffer.write(converters.to_jsonl(conversion.lines))
        return 0
    options = ImportOptions(
        project=args.project,
        dataset_type=args.dataset.upper(),
        bucket=args.bucket,
        prefix=_import_prefix(args),
        create_project=args.create_project,
        workers=args.workers,
        timeout=args.timeout,
    )
    endpoint = endpoint_of(args)
    with ObjectClient(endpoint) as objects:
        return run_import(rekognition(endpoint), objects, conversion, options)


if __name__ == "__main__":
    sys.exit(main())
