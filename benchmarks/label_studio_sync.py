"""Label Studio at scale: import 10,000 tasks, and pull 10,000 annotations into DuckDB.

Starts its own Label Studio (temp data dir, free port; ~20 s first start) unless --url/--token point at one.
The import goes through the same session calls as `label_tasks` (batches of --batch tasks); the pull is the
`human_labels` path (annotated tasks -> `annotations` -> resolved `labels`). The 10,000 annotations are seeded
through task import, as a person's would land one by one.

    .venv/bin/python benchmarks/label_studio_sync.py [--tasks 10000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _record import record  # noqa: E402

from fic_assets.platform import settings
from fic_assets.platform import warehouse
from fic_assets.defs.labelling import labels  # noqa: E402
from fic_assets.defs.labelling import server  # noqa: E402
from fic_assets.platform.net import free_port  # noqa: E402
from fic_assets.defs.labelling.client import LabelStudioResource, choice_result, instructions, labeling_config  # noqa: E402


def task(n: int, label: str | None = None) -> dict:
    data = {"data": {"image": f"http://shop.test/img/{n:06d}.jpg", "item_id": f"I{n // 4}", "brand": "Levi's", "brand_slug": "levis", "is_packshot": n % 4 == 0}}
    if label:
        data["annotations"] = [{"result": choice_result(label), "lead_time": 1.5}]
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--url")
    parser.add_argument("--token", default=settings.get("FIC_LABEL_STUDIO_TOKEN"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "label_studio"
        url = args.url
        if url is None:
            config = server.configured()
            started = time.perf_counter()
            url = server.start(free_port(), data_dir, config.username, config.password, args.token, config.venv_dir)
            print(f"Label Studio up in {time.perf_counter() - started:.1f} s at {url}")
        try:
            resource = LabelStudioResource(url=url, token=args.token, project_title=f"bench {uuid.uuid4().hex[:6]}")
            with resource.session() as ls:
                project_id = ls.ensure_project(labeling_config(), instructions()).id
                started = time.perf_counter()
                for first in range(0, args.tasks, args.batch):
                    ls.import_tasks(project_id, [task(n) for n in range(first, min(first + args.batch, args.tasks))])
                import_s = time.perf_counter() - started

                labelled = LabelStudioResource(url=url, token=args.token, project_title=f"bench labelled {uuid.uuid4().hex[:6]}")
            with labelled.session() as ls:
                labelled_id = ls.ensure_project(labeling_config(), instructions()).id
                for first in range(0, args.tasks, args.batch):
                    ls.import_tasks(labelled_id, [task(n, "worn" if n % 3 else "not_worn") for n in range(first, min(first + args.batch, args.tasks))])
                started = time.perf_counter()
                rows = labels.annotation_rows(ls.annotated_tasks(labelled_id), labelled_id, ls.annotator_names())
                fetch_s = time.perf_counter() - started
                annotations = labels.annotations_frame(rows)
                with warehouse.connect(Path(tmp) / "bench.duckdb") as con, warehouse.transaction(con):
                    labels.sync_project(con, 1, annotations)  # project_key 1: the bench's only project
                pull_s = time.perf_counter() - started
        finally:
            if args.url is None:
                server.stop(data_dir)
    record(
        "label_studio_sync",
        {
            "tasks": args.tasks,
            "import_batch": args.batch,
            "import_s": round(import_s, 1),
            "import_tasks_per_s": round(args.tasks / import_s),
            "annotations_pulled": len(annotations),
            "pull_fetch_s": round(fetch_s, 1),
            "pull_total_s": round(pull_s, 1),
        },
    )


if __name__ == "__main__":
    main()
