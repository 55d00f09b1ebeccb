"""`sandan demo`: the end-to-end demonstration on the local stack (see services/demo)."""
from __future__ import annotations



def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the main job end to end on the local Kafka and Redis")
    p.add_argument("--count", type=int, default=400, help="declarations to generate (default 400)")
    p.add_argument("--seed", type=int, default=2026)
    p.set_defaults(run=run)


def run(args) -> int:
    from services.demo.runner import DemoPlan, run as run_demo

    result = run_demo(DemoPlan(count=args.count, seed=args.seed))
    return 0 if result["as_expected"] else 1


