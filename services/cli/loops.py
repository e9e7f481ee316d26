"""``customlabels loops list|show|answer``: review the human loops a flow definition opened.

    customlabels loops list --project flowers
    customlabels loops show dcl-6f1e2a90c3d54b1a8e7f0a12
    customlabels loops answer dcl-6f1e2a90c3d54b1a8e7f0a12 --label roses
    customlabels loops answer dcl-... --box dent:0.1,0.2,0.3,0.25 --box dent:0.5,0.5,0.2,0.2
    customlabels loops answer dcl-... --accept | --negative | --skip

They speak the review API (``customlabels-review``, through the stock boto3
client ``customlabels.client.review_client``), as the console's review queue
does. The reviewer is ``--worker`` (default: the login name).

Wiring (``services/cli/main.py``)::

    loops.add_commands(commands, connection, _Formatter, lambda args: review_client(endpoint_of(args)))
"""
from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable
from typing import Any

from services.cli.common import UsageError, positive_int

ClientFactory = Callable[[argparse.Namespace], Any]


def add_commands(commands, connection, formatter, make_client: ClientFactory) -> None:
    """Add ``loops`` (with ``list``, ``show``, ``answer``) to ``commands`` (argparse subparsers)."""
    loops = commands.add_parser(
        "loops", parents=[connection(argparse.SUPPRESS)], formatter_class=formatter,
        help="review human loops: list, show, answer (the review API)",
        description=(
            "Human loops are opened by a flow definition bound to a model (the tag\n"
            "customlabels:flow-definition on a version or its project) when a prediction meets\n"
            "its conditions, or by StartHumanLoop. Answers become entries of the project's\n"
            "TRAIN dataset once a loop has its TaskCount answers."
        ),
        epilog=(
            "Examples:\n"
            "  customlabels loops list --project flowers\n"
            "  customlabels loops show dcl-6f1e2a90c3d54b1a8e7f0a12\n"
            "  customlabels loops answer dcl-6f1e2a90c3d54b1a8e7f0a12 --label roses\n"
        ),
    )
    verbs = loops.add_subparsers(title="commands", metavar="COMMAND")

    listing = verbs.add_parser("list", parents=[connection(argparse.SUPPRESS)], formatter_class=formatter,
                               help="the loops waiting for answers, least confident first",
                               epilog="Examples:\n  customlabels loops list --project flowers --worker alice\n")
    scope = listing.add_mutually_exclusive_group()
    scope.add_argument("--project", metavar="NAME", help="only this project's loops")
    scope.add_argument("--flow", metavar="NAME", help="only this flow definition's loops")
    listing.add_argument("--status", default="InProgress", choices=("InProgress", "Completed", "Stopped", "Failed"))
    listing.add_argument("--worker", metavar="ID", help="leave out the loops this reviewer answered or skipped")
    listing.add_argument("--limit", type=positive_int, default=50, help="show at most this many (default 50)")
    listing.set_defaults(handler=lambda args: run_list(args, make_client(args)))

    show = verbs.add_parser("show", parents=[connection(argparse.SUPPRESS)], formatter_class=formatter,
                            help="one loop: image, predictions, labels to choose from, answers",
                            epilog="Examples:\n  customlabels loops show dcl-6f1e2a90c3d54b1a8e7f0a12 --json\n")
    show.add_argument("loop", metavar="LOOP", help="the human loop's name")
    show.add_argument("--json", action="store_true", help="print GetReviewTask's answer as JSON")
    show.set_defaults(handler=lambda args: run_show(args, make_client(args)))

    answer = verbs.add_parser(
        "answer", parents=[connection(argparse.SUPPRESS)], formatter_class=formatter,
        help="answer a loop: accept, correct (labels or boxes), negative, skip",
        epilog=(
            "Examples:\n"
            "  customlabels loops answer dcl-... --accept\n"
            "  customlabels loops answer dcl-... --label roses\n"
            "  customlabels loops answer dcl-... --label cat --label dog        (multi-label)\n"
            "  customlabels loops answer dcl-... --box dent:0.1,0.2,0.3,0.25    (left,top,width,height ratios)\n"
            "  customlabels loops answer dcl-... --negative\n"
        ),
    )
    answer.add_argument("loop", metavar="LOOP", help="the human loop's name")
    verdict = answer.add_mutually_exclusive_group()
    verdict.add_argument("--accept", action="store_true", help="the model's answer is right")
    verdict.add_argument("--negative", action="store_true", help="none of the project's labels is in the image")
    verdict.add_argument("--skip", action="store_true", help="pass: let another reviewer answer")
    answer.add_argument("--label", action="append", default=[], metavar="NAME", help="the right label (repeat for multi-label)")
    answer.add_argument("--box", action="append", default=[], metavar="LABEL:LEFT,TOP,WIDTH,HEIGHT",
                        help="a right box, as ratios of the image (repeat for each object)")
    answer.add_argument("--worker", metavar="ID", help="who answers (default: your login name)")
    answer.add_argument("--seconds", type=float, help="time spent on the answer")
    answer.add_argument("--comment", help="a note kept with the answer")
    answer.set_defaults(handler=lambda args: run_answer(args, make_client(args)))
    loops.set_defaults(handler=lambda args: (loops.print_help(), 2)[1])


def run_list(args: argparse.Namespace, client) -> int:
    params: dict[str, Any] = {"Status": args.status}
    for option, member in (("project", "ProjectName"), ("flow", "FlowDefinitionName"), ("worker", "WorkerId")):
        if getattr(args, option):
            params[member] = getattr(args, option)
    shown = 0
    print(f"{'LOOP':<30} {'STATUS':<11} {'ANSWERS':>7} {'TOP %':>6}  IMAGE")
    for page in client.get_paginator("list_review_tasks").paginate(**params):
        for task in page["ReviewTasks"]:
            image = task.get("Image", {}).get("S3Object")
            where = f"s3://{image['Bucket']}/{image['Name']}" if image else "-"
            top = task.get("TopConfidence")
            print(f"{task['HumanLoopName']:<30} {task['Status']:<11} {task.get('AnswerCount', 0):>3}/{task.get('TaskCount', 1):<3} "
                  f"{'-' if top is None else f'{top:.1f}':>6}  {where}")
            shown += 1
            if shown >= args.limit:
                return 0
    if not shown:
        print("(no loops)")
    return 0


def run_show(args: argparse.Namespace, client) -> int:
    task = client.get_review_task(HumanLoopName=args.loop)["ReviewTask"]
    if args.json:
        print(json.dumps(task, indent=2, default=str))
        return 0
    image = task.get("Image", {})
    s3 = image.get("S3Object")
    print(f"loop       {task['HumanLoopName']} ({task['Status']}, {task.get('AnswerCount', 0)} of {task.get('TaskCount', 1)} answers)")
    print(f"flow       {task['FlowDefinitionArn']}")
    if task.get("ProjectVersionArn"):
        print(f"model      {task['ProjectVersionArn']}")
    if s3:
        print(f"image      s3://{s3['Bucket']}/{s3['Name']} ({image.get('Width')}x{image.get('Height')})")
    print(f"task       {task.get('TaskType') or '-'}; labels: {', '.join(task.get('Labels') or []) or '-'}")
    thresholds = {t["Name"]: t["Confidence"] for t in task.get("Thresholds") or []}
    for prediction in task.get("Predictions") or []:
        box = prediction.get("BoundingBox")
        where = f"  box {box['Left']:.3f},{box['Top']:.3f},{box['Width']:.3f},{box['Height']:.3f}" if box else ""
        threshold = thresholds.get(prediction["Name"])
        said = "" if threshold is None else ("  (reported)" if prediction["Confidence"] >= threshold else "  (below threshold)")
        print(f"predicted  {prediction['Name']:<20} {prediction['Confidence']:6.2f}%{where}{said}")
    for answer in task.get("Answers") or []:
        labels = ", ".join(_label_text(label) for label in answer.get("Labels") or [])
        print(f"answer     {answer['WorkerId']}: {answer['Verdict']}{' ' + labels if labels else ''}")
    consolidated = task.get("ConsolidatedAnswer")
    if consolidated:
        labels = ", ".join(_label_text(label) for label in consolidated.get("Labels") or []) or "nothing"
        print(f"result     {consolidated['Verdict']}: {labels} (agreement {consolidated['Agreement']:.0%})")
    entry = task.get("Entry")
    if entry:
        print(f"entry      {'written to ' + entry.get('DatasetArn', '') if entry['Written'] else 'not written: ' + (entry.get('Reason') or '')}")
    return 0


def run_answer(args: argparse.Namespace, client) -> int:
    labels = [{"Name": name} for name in args.label] + [_box(text) for text in args.box]
    chosen = [verdict for verdict, on in (("ACCEPT", args.accept), ("NEGATIVE", args.negative), ("SKIP", args.skip)) if on]
    if chosen and labels:
        raise UsageError(f"error: --{chosen[0].lower()} takes no --label or --box")
    if not chosen and not labels:
        raise UsageError("error: say --accept, --negative or --skip, or give the right --label / --box")
    params: dict[str, Any] = {"HumanLoopName": args.loop, "Verdict": chosen[0] if chosen else "CORRECT",
                              "WorkerId": args.worker or _login()}
    if labels:
        params["Labels"] = labels
    if args.seconds is not None:
        params["TimeSpentInSeconds"] = args.seconds
    if args.comment:
        params["Comment"] = args.comment
    result = client.answer_review_task(**params)
    print(f"{args.loop}: {result['Status']} ({result.get('AnswerCount', 0)} of {result.get('TaskCount', 1)} answers)")
    return 0


def _box(text: str) -> dict[str, Any]:
    label, _, numbers = text.rpartition(":")
    try:
        left, top, width, height = (float(n) for n in numbers.split(","))
    except ValueError:
        raise UsageError(f"error: --box {text!r}: expected LABEL:LEFT,TOP,WIDTH,HEIGHT (ratios)") from None
    if not label:
        raise UsageError(f"error: --box {text!r}: the label is missing")
    return {"Name": label, "BoundingBox": {"Left": left, "Top": top, "Width": width, "Height": height}}


def _label_text(label: dict[str, Any]) -> str:
    box = label.get("BoundingBox")
    return label["Name"] + (f" [{box['Left']:.2f},{box['Top']:.2f},{box['Width']:.2f},{box['Height']:.2f}]" if box else "")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "anonymous"
