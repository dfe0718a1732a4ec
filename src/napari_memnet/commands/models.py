"""``memnet models``: list bundled and user models."""

from __future__ import annotations

import json

from ..core.tasks import TASK_NAMES


def register(sub) -> None:
    p = sub.add_parser("models", help="list bundled and user models")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--task", choices=TASK_NAMES, help="only this task's models")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..models.files import list_models, user_models_dir

    models = list_models(args.task)
    if args.json:
        print(json.dumps([m.to_dict() for m in models], indent=2))
        return 0
    if not models:
        print(f"no models found (bundled or in {user_models_dir()})")
        return 0
    print(f"{'name':<28} {'task':<8} {'arch':<7} {'source':<8} path")
    for m in models:
        print(f"{m.name:<28} {m.task:<8} {m.architecture:<7} {m.source:<8} {m.path}")
    return 0
